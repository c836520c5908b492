//! Module arguments: Ansible's args file in, typed arguments out.
//!
//! Ansible hands binary modules the values exactly as the task wrote them (`"5"`, `"yes"`) and
//! checks nothing. We walk the JSON schema of the argument type and, like Ansible's own
//! `AnsibleModule`, convert the usual string forms, then refuse whatever still does not fit,
//! naming the argument. Properties marked `x-secret` in the schema are collected so that their
//! values can be scrubbed from every output, and are never quoted in an error.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::Context;

use crate::coerce::{State, Walker, describe};
pub use crate::schema::SECRET_KEYWORD;
use crate::schema::Schema;

/// Typed arguments plus what the protocol learnt while parsing them.
#[derive(Debug)]
pub struct ParsedArgs<T> {
    pub args: T,
    pub context: Context,
    /// Values of secret arguments, to scrub from every output.
    pub secrets: Vec<String>,
    /// The arguments as given, secrets replaced by the mask (for `invocation`).
    pub masked_args: Value,
}

/// Arguments that cannot be used; `msg` names the argument and what to do.
#[derive(Debug)]
pub struct ArgsError {
    pub msg: String,
    /// Secrets seen before the error, so that the caller can still scrub them.
    pub secrets: Vec<String>,
}

/// Parses the content of Ansible's args file into `T`.
pub fn parse<T: DeserializeOwned + JsonSchema>(text: &str) -> Result<ParsedArgs<T>, ArgsError> {
    let fail = |msg: String, secrets: Vec<String>| ArgsError { msg, secrets };
    let value: Value = serde_json::from_str(text).map_err(|e| {
        fail(
            format!("the module arguments are not valid JSON ({e}); Ansible writes them as one JSON object"),
            vec![],
        )
    })?;
    let Value::Object(all) = value else {
        return Err(fail(
            "the module arguments must be one JSON object of name: value pairs".into(),
            vec![],
        ));
    };
    let (ansible, task): (Map<String, Value>, Map<String, Value>) = all
        .into_iter()
        .partition(|(k, _)| k.starts_with("_ansible_"));
    let context = context_from(&ansible).map_err(|errors| fail(errors.join("; "), vec![]))?;

    let schema = schemars::schema_for!(T);
    let root = schema.as_value();
    let walker = Walker {
        schema: Schema::new(root),
    };
    let mut state = State::default();
    let coerced = walker.object(task, root, "", true, &mut state);
    if !state.errors.is_empty() {
        return Err(fail(state.errors.join("; "), state.secrets));
    }
    let masked_args = walker.masked(&coerced, root);
    let args = serde_path_to_error::deserialize(coerced.clone()).map_err(|e| {
        let path = e.path().to_string();
        fail(
            format!("argument '{path}' is not valid: {}", e.inner()),
            state.secrets.clone(),
        )
    })?;
    Ok(ParsedArgs {
        args,
        context,
        secrets: state.secrets,
        masked_args,
    })
}

/// The `_ansible_*` keys we honour, checked like any argument: a check_mode that is not a
/// boolean must not silently become "false" and run the task for real. Keys we do not know
/// are accepted (Ansible adds new ones between versions).
fn context_from(ansible: &Map<String, Value>) -> Result<Context, Vec<String>> {
    let errors = std::cell::RefCell::new(Vec::new());
    let flag = |key: &str| match ansible.get(key) {
        None | Some(Value::Null) => false,
        Some(value) => as_bool(value).unwrap_or_else(|| {
            errors.borrow_mut().push(format!(
                "argument '{key}' must be a boolean, got {}",
                describe(value)
            ));
            false
        }),
    };
    let text = |key: &str| match ansible.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(value) => {
            errors.borrow_mut().push(format!(
                "argument '{key}' must be a string, got {}",
                describe(value)
            ));
            None
        }
    };
    let verbosity = match ansible.get("_ansible_verbosity") {
        None | Some(Value::Null) => 0,
        Some(value) => value
            .as_u64()
            .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
            .and_then(|v| u8::try_from(v).ok())
            .unwrap_or_else(|| {
                errors.borrow_mut().push(format!(
                    "argument '_ansible_verbosity' must be an integer 0..255, got {}",
                    describe(value)
                ));
                0
            }),
    };
    let context = Context {
        check_mode: flag("_ansible_check_mode"),
        diff: flag("_ansible_diff"),
        no_log: flag("_ansible_no_log"),
        verbosity,
        module_name: text("_ansible_module_name"),
        tmpdir: text("_ansible_tmpdir"),
        inject_invocation: flag("_ansible_inject_invocation"),
    };
    let errors = errors.into_inner();
    if errors.is_empty() {
        Ok(context)
    } else {
        Err(errors)
    }
}

/// Ansible's boolean spellings (module_utils/parsing/convert_bool.py).
pub fn as_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_f64() {
            Some(1.0) => Some(true),
            Some(0.0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "yes" | "on" | "1" | "true" | "y" | "t" => Some(true),
            "no" | "off" | "0" | "false" | "n" | "f" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(dead_code)] // schema-only test types
    use super::*;
    use crate::MASK;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, JsonSchema, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        /// Fast.
        Fast,
        /// Slow.
        Slow,
    }

    #[derive(Debug, Deserialize, JsonSchema)]
    struct Conn {
        /// Port.
        #[serde(default)]
        port: Option<u16>,
        /// Secret.
        #[serde(default)]
        #[schemars(extend("x-secret" = true))]
        password: Option<String>,
    }

    #[derive(Debug, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Item {
        /// Name.
        name: String,
    }

    #[derive(Debug, Deserialize, JsonSchema)]
    struct Args {
        #[serde(flatten)]
        conn: Conn,
        /// A flag.
        #[serde(default)]
        flag: bool,
        /// Mode.
        #[serde(default)]
        mode: Option<Mode>,
        /// Items.
        #[serde(default)]
        items: Vec<Item>,
        /// Tags.
        #[serde(default)]
        tags: Vec<String>,
        /// Ratio.
        #[serde(default)]
        ratio: Option<f64>,
    }

    fn ok(text: &str) -> ParsedArgs<Args> {
        parse::<Args>(text).unwrap_or_else(|e| panic!("{}", e.msg))
    }

    fn err(text: &str) -> String {
        parse::<Args>(text).unwrap_err().msg
    }

    #[test]
    fn ansible_string_forms_are_converted() {
        let p = ok(
            r#"{"port": "5432", "flag": "yes", "tags": "a, b", "ratio": "0.5", "mode": "slow"}"#,
        );
        assert_eq!(p.args.conn.port, Some(5432));
        assert!(p.args.flag);
        assert_eq!(p.args.tags, vec!["a", "b"]);
        assert_eq!(p.args.ratio, Some(0.5));
        assert_eq!(p.args.mode, Some(Mode::Slow));
        for (text, expected) in [("True", true), ("off", false), ("1", true), ("n", false)] {
            let p = ok(&format!(r#"{{"flag": "{text}"}}"#));
            assert_eq!(p.args.flag, expected, "{text}");
        }
    }

    #[test]
    fn context_is_read_from_ansible_keys() {
        let p = ok(
            r#"{"_ansible_check_mode": true, "_ansible_diff": "yes", "_ansible_verbosity": 4, "_ansible_no_log": false, "_ansible_module_name": "db_x", "_ansible_new_thing": [1]}"#,
        );
        assert!(p.context.check_mode && p.context.diff && !p.context.no_log);
        assert_eq!(p.context.verbosity, 4);
        assert_eq!(p.context.module_name.as_deref(), Some("db_x"));
    }

    #[test]
    fn malformed_ansible_keys_are_refused_not_read_as_false() {
        let e = err(r#"{"_ansible_check_mode": "maybe"}"#);
        assert!(
            e.contains("argument '_ansible_check_mode' must be a boolean"),
            "{e}"
        );
        assert!(err(r#"{"_ansible_diff": [true]}"#).contains("'_ansible_diff'"));
        assert!(err(r#"{"_ansible_verbosity": "loud"}"#).contains("'_ansible_verbosity'"));
        assert!(err(r#"{"_ansible_module_name": 5}"#).contains("'_ansible_module_name'"));
        // Spellings Ansible itself accepts still work; unknown keys are still accepted.
        let p = ok(r#"{"_ansible_check_mode": "yes", "_ansible_brand_new": {"x": 1}}"#);
        assert!(p.context.check_mode);
    }

    #[test]
    fn refusals_name_the_argument() {
        assert!(
            err(r#"{"port": "x"}"#).contains("argument 'port' must be an integer, got string 'x'")
        );
        assert!(err(r#"{"port": 70000}"#).contains("'port'"));
        assert!(err(r#"{"flag": "maybe"}"#).contains("argument 'flag' must be a boolean"));
        let e = err(r#"{"mode": "turbo"}"#);
        assert!(
            e.contains("value of 'mode' must be one of: fast, slow; got string 'turbo'"),
            "{e}"
        );
        let e = err(r#"{"items": [{"name": "a", "extra": 1}]}"#);
        assert!(
            e.contains("unsupported parameters in 'items[0]': extra"),
            "{e}"
        );
        let e = err(r#"{"items": [{}]}"#);
        assert!(
            e.contains("missing required arguments: items[0].name"),
            "{e}"
        );
        let e = err(r#"{"bogus": 1, "flag": true}"#);
        assert!(
            e.contains("unsupported parameters: bogus; supported parameters are: flag, items, mode, password, port, ratio, tags"),
            "{e}"
        );
    }

    #[test]
    fn secrets_are_collected_masked_and_never_quoted() {
        let p = ok(r#"{"password": "pw-123", "port": 1}"#);
        assert_eq!(p.secrets, vec!["pw-123"]);
        assert_eq!(p.masked_args["password"], MASK);
        assert_eq!(p.masked_args["port"], 1);
        let e = parse::<Args>(r#"{"password": ["pw-123"]}"#).unwrap_err();
        assert!(!e.msg.contains("pw-123"), "{}", e.msg);
        assert_eq!(e.secrets, vec!["pw-123"]);
    }

    #[test]
    fn null_means_not_given() {
        let p = ok(r#"{"port": null, "mode": null}"#);
        assert_eq!(p.args.conn.port, None);
        assert_eq!(p.args.mode, None);
    }
}
