//! `AccessLog` → [`crate::access_log::AccessLog`]: file, stdout and stderr loggers with
//! text or JSON formats (Envoy's default fields as JSON when no format is given).

// Deprecated Envoy fields are still read: configurations written for older Envoy
// versions use them, and Envoy itself still honours them.
#![allow(deprecated)]

use super::{decode_any, Context};
use crate::access_log::{json_string, AccessLog, LogFormat, Target};
use crate::format::Template;
use std::path::PathBuf;
use std::sync::Arc;
use weft_xds::pb::envoy::config::accesslog::v3::{access_log, AccessLog as AccessLogProto};
use weft_xds::pb::envoy::config::core::v3::{
    data_source, substitution_format_string, SubstitutionFormatString,
};
use weft_xds::pb::envoy::extensions::access_loggers::file::v3::{file_access_log, FileAccessLog};
use weft_xds::pb::envoy::extensions::access_loggers::stream::v3::{
    StderrAccessLog, StdoutAccessLog,
};
use weft_xds::pb::google::protobuf::{value, Struct};
use weft_xds::type_url;

/// Compiles a list of access logs.
pub fn compile_all(
    logs: &[AccessLogProto],
    path: &str,
    ctx: &mut Context<'_>,
) -> Vec<Arc<AccessLog>> {
    logs.iter()
        .enumerate()
        .filter_map(|(i, l)| compile(l, &format!("{path}[{i}]"), ctx).map(Arc::new))
        .collect()
}

fn compile(log: &AccessLogProto, path: &str, ctx: &mut Context<'_>) -> Option<AccessLog> {
    let tpath = format!("{path}.typed_config");
    let Some(access_log::ConfigType::TypedConfig(any)) = &log.config_type else {
        ctx.error(&tpath, "an access logger needs a typed_config");
        return None;
    };
    let (target, format) = match any.type_url.as_str() {
        type_url::FILE_ACCESS_LOG => {
            let f: FileAccessLog = decode_any(any, &tpath, ctx)?;
            if f.path.is_empty() {
                ctx.error(&format!("{tpath}.path"), "a path is required");
                return None;
            }
            let format = match &f.access_log_format {
                None => LogFormat::default_json(),
                Some(file_access_log::AccessLogFormat::Format(s)) => {
                    text(s, &format!("{tpath}.format"), ctx)?
                }
                Some(file_access_log::AccessLogFormat::JsonFormat(s)) => {
                    json(s, false, &format!("{tpath}.json_format"), ctx)?
                }
                Some(file_access_log::AccessLogFormat::LogFormat(s)) => {
                    substitution(s, &format!("{tpath}.log_format"), ctx)?
                }
                Some(_) => {
                    ctx.error(&tpath, "typed_json_format is not supported");
                    return None;
                }
            };
            let target = match f.path.as_str() {
                "/dev/stdout" => Target::Stdout,
                "/dev/stderr" => Target::Stderr,
                p => Target::File(PathBuf::from(p)),
            };
            (target, format)
        }
        type_url::STDOUT_ACCESS_LOG => {
            let s: StdoutAccessLog = decode_any(any, &tpath, ctx)?;
            (Target::Stdout, stream_format(s.access_log_format.map(|f| match f {
                weft_xds::pb::envoy::extensions::access_loggers::stream::v3::stdout_access_log::AccessLogFormat::LogFormat(l) => l,
            }), &tpath, ctx)?)
        }
        type_url::STDERR_ACCESS_LOG => {
            let s: StderrAccessLog = decode_any(any, &tpath, ctx)?;
            (Target::Stderr, stream_format(s.access_log_format.map(|f| match f {
                weft_xds::pb::envoy::extensions::access_loggers::stream::v3::stderr_access_log::AccessLogFormat::LogFormat(l) => l,
            }), &tpath, ctx)?)
        }
        other => {
            ctx.error(
                &tpath,
                format!("access logger {other} is not supported (file, stdout and stderr are)"),
            );
            return None;
        }
    };
    match AccessLog::new(format, target.clone()) {
        Ok(l) => Some(l),
        Err(e) => {
            ctx.error(
                &format!("{tpath}.path"),
                format!("cannot open {target:?}: {e}"),
            );
            None
        }
    }
}

fn stream_format(
    f: Option<SubstitutionFormatString>,
    path: &str,
    ctx: &mut Context<'_>,
) -> Option<LogFormat> {
    match f {
        None => Some(LogFormat::default_json()),
        Some(s) => substitution(&s, &format!("{path}.log_format"), ctx),
    }
}

fn substitution(
    s: &SubstitutionFormatString,
    path: &str,
    ctx: &mut Context<'_>,
) -> Option<LogFormat> {
    use substitution_format_string::Format as F;
    match &s.format {
        Some(F::TextFormat(t)) => text(t, &format!("{path}.text_format"), ctx),
        Some(F::TextFormatSource(ds)) => {
            let t = match &ds.specifier {
                Some(data_source::Specifier::InlineString(s)) => s.clone(),
                Some(data_source::Specifier::InlineBytes(b)) => {
                    String::from_utf8_lossy(b).into_owned()
                }
                Some(data_source::Specifier::Filename(f)) => match std::fs::read_to_string(f) {
                    Ok(t) => t,
                    Err(e) => {
                        ctx.error(
                            &format!("{path}.text_format_source.filename"),
                            format!("cannot read {f}: {e}"),
                        );
                        return None;
                    }
                },
                _ => {
                    ctx.error(
                        &format!("{path}.text_format_source"),
                        "inline_string, inline_bytes or filename is required",
                    );
                    return None;
                }
            };
            text(&t, &format!("{path}.text_format_source"), ctx)
        }
        Some(F::JsonFormat(j)) => json(j, s.omit_empty_values, &format!("{path}.json_format"), ctx),
        None => Some(LogFormat::default_json()),
    }
}

fn text(t: &str, path: &str, ctx: &mut Context<'_>) -> Option<LogFormat> {
    match Template::parse(t) {
        Ok(t) => Some(LogFormat::Text(t)),
        Err(e) => {
            ctx.error(path, e.to_string());
            None
        }
    }
}

fn json(s: &Struct, omit_empty: bool, path: &str, ctx: &mut Context<'_>) -> Option<LogFormat> {
    let mut fields = Vec::new();
    let mut keys: Vec<&String> = s.fields.keys().collect();
    keys.sort();
    for key in keys {
        let v = &s.fields[key];
        let text = match &v.kind {
            Some(value::Kind::StringValue(t)) => t.clone(),
            Some(value::Kind::NumberValue(n)) => n.to_string(),
            Some(value::Kind::BoolValue(b)) => b.to_string(),
            _ => {
                ctx.error(
                    &format!("{path}.{key}"),
                    "only string, number and boolean values are supported",
                );
                return None;
            }
        };
        match Template::parse(&text) {
            Ok(t) => fields.push((json_string(key), t)),
            Err(e) => {
                ctx.error(&format!("{path}.{key}"), e.to_string());
                return None;
            }
        }
    }
    Some(LogFormat::Json { fields, omit_empty })
}
