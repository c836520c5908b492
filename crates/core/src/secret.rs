//! Secrets as a type. Passwords and tokens are [`SecretString`]s: their Debug output is
//! `[REDACTED]`, they are wiped from memory when dropped, and the value is reached only through
//! [`ExposeSecret::expose_secret`] at the one place it is handed on (a driver, an environment
//! variable of a child, a 0600 file). Serialized, a secret is always masked.

pub use secrecy::{ExposeSecret, SecretString};

/// What a serialized secret looks like (module output, debug dumps).
pub const MASK: &str = "********";

/// Serializes a secret as [`MASK`] (None stays null): for `#[serde(serialize_with)]`.
pub fn serialize_masked<S: serde::Serializer>(
    value: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => serializer.serialize_some(MASK),
        None => serializer.serialize_none(),
    }
}

/// Serializes a required secret as [`MASK`]: for `#[serde(serialize_with)]`.
pub fn serialize_masked_one<S: serde::Serializer>(
    _value: &SecretString,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(MASK)
}

/// Serializes a list of secrets as as many masks.
pub fn serialize_masked_list<S: serde::Serializer>(
    value: &[SecretString],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = serializer.serialize_seq(Some(value.len()))?;
    for _ in value {
        seq.serialize_element(MASK)?;
    }
    seq.end()
}

/// The secret's value, for the one place it is handed on.
pub fn expose(value: &Option<SecretString>) -> Option<&str> {
    value.as_ref().map(|s| s.expose_secret())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Args {
        #[serde(serialize_with = "serialize_masked")]
        password: Option<SecretString>,
    }

    #[test]
    fn a_secret_never_shows_in_debug_or_serialization() {
        let args: Args = serde_json::from_str(r#"{"password": "p'w\\#:$x"}"#).unwrap();
        assert_eq!(expose(&args.password), Some("p'w\\#:$x"));
        assert!(!format!("{args:?}").contains("p'w"));
        let json = serde_json::to_string(&args).unwrap();
        assert_eq!(json, r#"{"password":"********"}"#);
    }
}
