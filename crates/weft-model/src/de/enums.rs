//! Enums as users write them: a bare name (`mode: STRICT`) or a oneof as a one-entry
//! mapping (`uri: {prefix: /api}`).

use super::{NodeDe, PathLink, SegRef};
use crate::de::DeError;
use crate::node::Entry;
use serde::de::{self, DeserializeSeed, EnumAccess, IntoDeserializer, VariantAccess, Visitor};

/// An enum written as its bare name (`mode: STRICT`).
pub(super) struct UnitEnum<'a> {
    pub(super) text: &'a str,
}

impl<'de> EnumAccess<'de> for UnitEnum<'_> {
    type Error = DeError;
    type Variant = UnitOnly;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, UnitOnly), DeError> {
        let de: de::value::StrDeserializer<'_, DeError> = self.text.into_deserializer();
        Ok((seed.deserialize(de)?, UnitOnly))
    }
}

/// A oneof written as a one-entry mapping.
pub(super) struct MapEnum<'n, 'p> {
    pub(super) entry: &'n Entry,
    pub(super) path: &'p PathLink<'p>,
}

impl<'de> EnumAccess<'de> for MapEnum<'_, '_> {
    type Error = DeError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), DeError> {
        let link = PathLink {
            parent: Some(self.path),
            seg: SegRef::Key(self.entry.key()),
        };
        let variant = seed
            .deserialize(NodeDe {
                node: &self.entry.key,
                path: &link,
            })
            .map_err(|mut e| {
                // The variant names are field names here.
                if let Some(rest) = e.message.strip_prefix("unknown value") {
                    e.message = format!("unknown field{rest}");
                }
                e
            })?;
        Ok((variant, self))
    }
}

impl<'de> VariantAccess<'de> for MapEnum<'_, '_> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        Err(DeError::new("expected a name, found a mapping"))
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        let link = PathLink {
            parent: Some(self.path),
            seg: SegRef::Key(self.entry.key()),
        };
        seed.deserialize(NodeDe {
            node: &self.entry.value,
            path: &link,
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        let link = PathLink {
            parent: Some(self.path),
            seg: SegRef::Key(self.entry.key()),
        };
        de::Deserializer::deserialize_seq(
            NodeDe {
                node: &self.entry.value,
                path: &link,
            },
            visitor,
        )
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let link = PathLink {
            parent: Some(self.path),
            seg: SegRef::Key(self.entry.key()),
        };
        de::Deserializer::deserialize_map(
            NodeDe {
                node: &self.entry.value,
                path: &link,
            },
            visitor,
        )
    }
}

/// The only variant access a bare name allows.
pub(super) struct UnitOnly;

impl<'de> VariantAccess<'de> for UnitOnly {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _seed: T) -> Result<T::Value, DeError> {
        Err(DeError::new("expected a mapping, found a name"))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value, DeError> {
        Err(DeError::new("expected a list, found a name"))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, DeError> {
        Err(DeError::new("expected a mapping, found a name"))
    }
}
