//! The proto3 JSON mapping, from Envoy YAML or JSON into prost types and back, driven by
//! the descriptors in [`crate::descriptor_pool`]. Unknown fields are errors, `typed_config`
//! with `@type` is resolved through the pool, and every error names the field path and
//! the line where the parser stopped.

use prost::{Message, Name};
use prost_reflect::{DeserializeOptions, DynamicMessage, SerializeOptions};
use std::fmt;

/// Why a document could not be turned into a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    /// The field path at fault, in the document's own spelling (`a.b[2].c`), empty at the top.
    pub path: String,
    /// 1-based line of the document, when the parser knows it.
    pub line: Option<usize>,
    /// 1-based column, when the parser knows it.
    pub column: Option<usize>,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}")?;
            if let Some(col) = self.column {
                write!(f, ", column {col}")?;
            }
            f.write_str(": ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Parses `text`, written in JSON or YAML, as the message `M` with the proto3 JSON
/// mapping (Envoy's own format for bootstrap files). Returns the typed message and its
/// dynamic form, whose set fields a caller may walk.
pub fn from_json_or_yaml<M: Message + Name + Default>(
    text: &str,
) -> Result<(M, DynamicMessage), ParseError> {
    let desc = crate::descriptor_pool()
        .get_message_by_name(&M::full_name())
        .ok_or_else(|| ParseError {
            path: String::new(),
            line: None,
            column: None,
            message: format!("no descriptor for {}", M::full_name()),
        })?;
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    let mut track = serde_path_to_error::Track::new();
    let dynamic = if looks_like_json(text) {
        let mut de = serde_json::Deserializer::from_str(text);
        let tracked = serde_path_to_error::Deserializer::new(&mut de, &mut track);
        DynamicMessage::deserialize_with_options(desc, tracked, &options)
            .and_then(|m| de.end().map(|()| m))
            .map_err(|e| ParseError {
                path: track.path().to_string(),
                line: Some(e.line()),
                column: Some(e.column()),
                message: strip_location(&e.to_string()),
            })?
    } else {
        if text.trim().is_empty() {
            return Err(ParseError {
                path: String::new(),
                line: None,
                column: None,
                message: "the document is empty".into(),
            });
        }
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let tracked = serde_path_to_error::Deserializer::new(de, &mut track);
        DynamicMessage::deserialize_with_options(desc, tracked, &options).map_err(|e| {
            let loc = e.location();
            let path = track.path().to_string();
            // serde_yaml prefixes its messages with the path it knows; we report ours.
            let message = strip_location(&e.to_string());
            let message = message
                .strip_prefix(&format!("{path}: "))
                .map(str::to_string)
                .unwrap_or(message);
            ParseError {
                path,
                line: loc.as_ref().map(|l| l.line()),
                column: loc.as_ref().map(|l| l.column()),
                message,
            }
        })?
    };
    let typed = M::decode(dynamic.encode_to_vec().as_slice()).map_err(|e| ParseError {
        path: String::new(),
        line: None,
        column: None,
        message: format!("internal: re-encoding as {} failed: {e}", M::full_name()),
    })?;
    Ok((typed, dynamic))
}

/// Renders a message in Envoy's JSON spelling (proto field names, `@type` for `Any`).
pub fn to_json<M: Message + Name>(message: &M) -> serde_json::Value {
    let Some(desc) = crate::descriptor_pool().get_message_by_name(&M::full_name()) else {
        return serde_json::Value::Null;
    };
    let Ok(dynamic) = DynamicMessage::decode(desc, message.encode_to_vec().as_slice()) else {
        return serde_json::Value::Null;
    };
    dynamic_to_json(&dynamic)
}

/// Renders a dynamic message in Envoy's JSON spelling.
pub fn dynamic_to_json(message: &DynamicMessage) -> serde_json::Value {
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false);
    message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .unwrap_or(serde_json::Value::Null)
}

fn looks_like_json(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

/// The parsers append " at line X column Y"; we report the location separately.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::envoy::config::bootstrap::v3::Bootstrap;

    const BOOTSTRAP: &str = r#"
admin:
  address:
    socket_address: { address: 127.0.0.1, port_value: 9901 }
static_resources:
  listeners:
  - name: l0
    address:
      socket_address: { address: 127.0.0.1, port_value: "10000" }
    filter_chains:
    - filter_chain_match:
      filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: svc, timeout: 1.5s }
          http_filters:
          - name: envoy.filters.http.router
"#;

    #[test]
    fn parses_yaml_with_typed_config_and_string_numbers() {
        let (b, _) = from_json_or_yaml::<Bootstrap>(BOOTSTRAP).expect("parses");
        let l = &b.static_resources.expect("static").listeners[0];
        assert_eq!(l.name, "l0");
        let f = &l.filter_chains[0].filters[0];
        match &f.config_type {
            Some(crate::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(any)) => {
                assert_eq!(any.type_url, crate::type_url::HTTP_CONNECTION_MANAGER)
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn parses_json() {
        let json = r#"{"node": {"id": "n1", "cluster": "c"}, "admin": {"address": {"socketAddress": {"address": "127.0.0.1", "portValue": 1}}}}"#;
        let (b, _) = from_json_or_yaml::<Bootstrap>(json).expect("parses");
        assert_eq!(b.node.expect("node").id, "n1");
    }

    #[test]
    fn unknown_field_names_path_and_line() {
        let text = BOOTSTRAP.replace(
            "stat_prefix: ingress",
            "stat_prefix: ingress\n          bogus: 1",
        );
        let err = from_json_or_yaml::<Bootstrap>(&text).expect_err("unknown field");
        assert!(
            err.path.starts_with(
                "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"
            ),
            "{err}"
        );
        assert!(err.message.contains("bogus"), "{err}");
        // An `Any` is read whole before its type is known: the line is where it starts.
        assert_eq!(err.line, Some(15), "{err}");
        assert!(
            !err.message.contains("static_resources"),
            "path said twice: {err}"
        );
    }

    #[test]
    fn bad_duration_is_reported_at_its_field() {
        let text = BOOTSTRAP.replace("1.5s", "1.5x");
        let err = from_json_or_yaml::<Bootstrap>(&text).expect_err("bad duration");
        assert!(err.path.ends_with("routes[0].route.timeout"), "{err}");
    }

    #[test]
    fn round_trips_to_envoy_json() {
        let (b, _) = from_json_or_yaml::<Bootstrap>(BOOTSTRAP).expect("parses");
        let json = to_json(&b);
        assert_eq!(
            json["admin"]["address"]["socket_address"]["port_value"],
            9901
        );
        let any = &json["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
            ["typed_config"];
        assert_eq!(any["@type"], crate::type_url::HTTP_CONNECTION_MANAGER);
        assert_eq!(any["stat_prefix"], "ingress");
    }

    #[test]
    fn empty_document_is_an_error() {
        assert!(from_json_or_yaml::<Bootstrap>("  \n").is_err());
    }
}
