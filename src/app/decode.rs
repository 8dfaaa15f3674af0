//! The rules both transports decode a request by: what an integration id must look like, and
//! how a JSON body that does not parse or does not fit is refused. The transports read their
//! own framing (path, query string, headers, NATS payload) and apply these rules, so the same
//! mistake gets the same `code` over REST and NATS.

use serde::de::DeserializeOwned;
use serde_json::error::Category;
use uuid::Uuid;

use super::AppError;

/// An integration id as sent by a caller. Anything but a hyphenated UUID cannot name an
/// integration, so it is `NotFound` exactly like an unknown id.
pub fn integration_id(raw: &str) -> Result<Uuid, AppError> {
    match Uuid::try_parse(raw) {
        Ok(id) if raw.len() == 36 => Ok(id),
        _ => Err(AppError::NotFound),
    }
}

/// Deserializes an already parsed JSON value: a value of the wrong shape is `invalid_body`.
pub fn from_json_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, AppError> {
    serde_json::from_value(value).map_err(reject_json)
}

/// Syntax errors are `invalid_json`; well-formed JSON of the wrong shape is `invalid_body`.
/// serde's messages can quote values ("invalid type: string \"hunter2\""), so only the
/// field name of unknown/missing/duplicate-field errors is passed on.
pub fn reject_json(error: serde_json::Error) -> AppError {
    let position = if error.line() > 0 {
        format!(" (line {}, column {})", error.line(), error.column())
    } else {
        String::new()
    };
    match error.classify() {
        Category::Data => {
            AppError::InvalidBody(describe_serde_message(&error.to_string()).map_or_else(
                || format!("A field has the wrong JSON type or value{position}."),
                |message| format!("{message}{position}."),
            ))
        }
        Category::Syntax | Category::Eof | Category::Io => {
            AppError::InvalidJson(format!("The body is not well-formed JSON{position}."))
        }
    }
}

/// "Unknown field `x`" and the like, with the name cut to a sane length; `None` for messages
/// that may quote a value.
pub fn describe_serde_message(message: &str) -> Option<String> {
    const MAX_NAME_CHARS: usize = 64;
    const KINDS: [(&str, &str); 3] = [
        ("unknown field `", "Unknown field"),
        ("missing field `", "Missing field"),
        ("duplicate field `", "Duplicate field"),
    ];
    KINDS.iter().find_map(|(needle, label)| {
        let rest = &message[message.find(needle)? + needle.len()..];
        let name: String = rest[..rest.find('`')?]
            .chars()
            .take(MAX_NAME_CHARS)
            .collect();
        Some(format!("{label} `{name}`"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        let id = Uuid::now_v7();
        assert_eq!(integration_id(&id.to_string()).unwrap(), id);
        for bad in ["", "x", &id.simple().to_string(), &format!("{{{id}}}")] {
            assert!(
                matches!(integration_id(bad), Err(AppError::NotFound)),
                "{bad}"
            );
        }
    }

    #[test]
    fn json_rejections_are_classified_and_never_quote_values() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Body {
            name: String,
        }
        let parse = |s: &str| {
            serde_json::from_str::<Body>(s)
                .map_err(reject_json)
                .unwrap_err()
        };
        assert!(matches!(parse("{"), AppError::InvalidJson(_)));
        assert!(matches!(parse("{\"name\": }"), AppError::InvalidJson(_)));
        assert!(matches!(
            parse(r#"{"name": "x"} trailing"#),
            AppError::InvalidJson(_)
        ));
        match parse(r#"{"name": "x", "extra": 1}"#) {
            AppError::InvalidBody(detail) => {
                assert!(detail.starts_with("Unknown field `extra`"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
        match parse(r#"{"name": ["hunter2"]}"#) {
            AppError::InvalidBody(detail) => assert!(!detail.contains("hunter2"), "{detail}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse("[]"), AppError::InvalidBody(_)));
        assert!(matches!(parse("{}"), AppError::InvalidBody(_)));
    }
}
