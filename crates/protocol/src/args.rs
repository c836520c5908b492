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

use crate::{Context, MASK};

pub use crate::schema::SECRET_KEYWORD;
use crate::schema::{Flat, Schema};

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

#[derive(Default)]
struct State {
    errors: Vec<String>,
    secrets: Vec<String>,
}

struct Walker<'a> {
    schema: Schema<'a>,
}

impl Walker<'_> {
    fn resolve(&self, schema: &Value) -> Flat {
        self.schema.flat(schema)
    }

    /// Coerces an object's members; `top` objects refuse unknown keys whatever the schema says
    /// (flattened structs cannot carry `deny_unknown_fields`).
    fn object(
        &self,
        mut given: Map<String, Value>,
        schema: &Value,
        path: &str,
        top: bool,
        state: &mut State,
    ) -> Value {
        let resolved = self.resolve(schema);
        let empty = Map::new();
        let props = resolved.properties().unwrap_or(&empty);
        let closed = top || resolved.get("additionalProperties") == Some(&Value::Bool(false));
        if props.is_empty() && !closed {
            // A free-form map (labels and the like): coerce the values if their type is known.
            if let Some(values) = resolved
                .get("additionalProperties")
                .filter(|v| v.is_object())
            {
                for (k, v) in given.iter_mut() {
                    let taken = std::mem::take(v);
                    *v = self.value(taken, values, &join(path, k), state);
                }
            }
            return Value::Object(given);
        }
        let mut unknown: Vec<&String> = given.keys().filter(|k| !props.contains_key(*k)).collect();
        if closed && !unknown.is_empty() {
            unknown.sort();
            let mut accepted: Vec<&String> = props.keys().collect();
            accepted.sort();
            let names = |v: &[&String]| v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
            let place = if path.is_empty() {
                String::new()
            } else {
                format!(" in '{path}'")
            };
            state.errors.push(format!(
                "unsupported parameters{place}: {}; supported parameters are: {}",
                names(&unknown),
                names(&accepted)
            ));
        }
        let required = resolved.required();
        // An explicit null means "not given" (Ansible's `omit` and `~` both mean that).
        given.retain(|k, v| !v.is_null() || required.contains(&k.as_str()));
        let mut missing: Vec<String> = required
            .iter()
            .filter(|r| given.get(**r).is_none_or(Value::is_null))
            .map(|r| join(path, r))
            .collect();
        if !missing.is_empty() {
            missing.sort();
            state.errors.push(format!(
                "missing required arguments: {}",
                missing.join(", ")
            ));
        }
        let mut out = Map::new();
        for (k, v) in given {
            let value = match props.get(&k) {
                Some(prop) => self.value(v, prop, &join(path, &k), state),
                None => v,
            };
            out.insert(k, value);
        }
        Value::Object(out)
    }

    fn value(&self, given: Value, schema: &Value, path: &str, state: &mut State) -> Value {
        let resolved = self.resolve(schema);
        let secret = resolved.is_secret();
        if secret {
            collect_secret_strings(&given, &mut state.secrets);
        }
        let shown = |v: &Value| {
            if secret {
                "a value (hidden: secret)".to_string()
            } else {
                describe(v)
            }
        };
        let mut error = |what: &str, v: &Value| {
            state.errors.push(format!(
                "argument '{path}' must be {what}, got {}",
                shown(v)
            ));
        };
        let coerced = match resolved.kind() {
            Some("boolean") => match as_bool(&given) {
                Some(b) => Value::Bool(b),
                None => {
                    error("a boolean (true/false, yes/no)", &given);
                    given
                }
            },
            Some("integer") => match &given {
                Value::Number(n) if n.is_i64() || n.is_u64() => given,
                Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => {
                    Value::from(n.as_f64().unwrap_or_default() as i64)
                }
                Value::String(s) => match (s.trim().parse::<i64>(), s.trim().parse::<u64>()) {
                    (Ok(i), _) => Value::from(i),
                    (_, Ok(u)) => Value::from(u),
                    _ => {
                        error("an integer", &given);
                        given
                    }
                },
                _ => {
                    error("an integer", &given);
                    given
                }
            },
            Some("number") => match &given {
                Value::Number(_) => given,
                Value::String(s) => match s.trim().parse::<f64>() {
                    Ok(f) => Value::from(f),
                    Err(_) => {
                        error("a number", &given);
                        given
                    }
                },
                _ => {
                    error("a number", &given);
                    given
                }
            },
            Some("string") => match &given {
                Value::String(_) => given,
                Value::Number(n) => Value::String(n.to_string()),
                _ => {
                    error("a string", &given);
                    given
                }
            },
            Some("array") => {
                let items = match given {
                    Value::Array(items) => Some(items),
                    // Ansible's list type splits "a,b" on commas.
                    Value::String(ref s) => Some(
                        s.split(',')
                            .map(|p| Value::String(p.trim().to_string()))
                            .filter(|p| p.as_str() != Some(""))
                            .collect(),
                    ),
                    ref other => {
                        error("a list", other);
                        None
                    }
                };
                match (items, resolved.get("items")) {
                    (Some(items), Some(item_schema)) => Value::Array(
                        items
                            .into_iter()
                            .enumerate()
                            .map(|(i, v)| {
                                self.value(v, item_schema, &format!("{path}[{i}]"), state)
                            })
                            .collect(),
                    ),
                    (Some(items), None) => Value::Array(items),
                    (None, _) => Value::Null,
                }
            }
            Some("object") => {
                let given = match given {
                    Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
                    other => other,
                };
                match given {
                    Value::Object(map) => self.object(map, schema, path, false, state),
                    other => {
                        error("a dictionary", &other);
                        other
                    }
                }
            }
            _ => given,
        };
        if let Some(n) = coerced
            .as_f64()
            .filter(|_| matches!(resolved.kind(), Some("integer" | "number")))
        {
            let min = resolved.get("minimum").and_then(Value::as_f64);
            let max = resolved.get("maximum").and_then(Value::as_f64);
            if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                let bound = |b: Option<f64>| b.map_or_else(|| "any".to_string(), |b| b.to_string());
                state.errors.push(format!(
                    "argument '{path}' must be between {} and {}, got {}",
                    bound(min),
                    bound(max),
                    shown(&coerced)
                ));
            }
        }
        if let Some(choices) = resolved.choices()
            && !coerced.is_null()
            && !choices.contains(&coerced)
        {
            let list: Vec<String> = choices
                .iter()
                .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_string))
                .collect();
            state.errors.push(format!(
                "value of '{path}' must be one of: {}; got {}",
                list.join(", "),
                shown(&coerced)
            ));
        }
        coerced
    }

    /// A copy of `value` with every secret property replaced by the mask.
    fn masked(&self, value: &Value, schema: &Value) -> Value {
        let resolved = self.resolve(schema);
        if resolved.is_secret() && !value.is_null() {
            return Value::String(MASK.into());
        }
        match value {
            Value::Object(map) => {
                let props = resolved.properties();
                Value::Object(
                    map.iter()
                        .map(|(k, v)| {
                            let masked = match props.and_then(|p| p.get(k)) {
                                Some(prop) => self.masked(v, prop),
                                None => v.clone(),
                            };
                            (k.clone(), masked)
                        })
                        .collect(),
                )
            }
            Value::Array(items) => match resolved.get("items") {
                Some(item_schema) => {
                    Value::Array(items.iter().map(|v| self.masked(v, item_schema)).collect())
                }
                None => value.clone(),
            },
            other => other.clone(),
        }
    }
}

fn collect_secret_strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) if !s.is_empty() => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(items) => items.iter().for_each(|v| collect_secret_strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_secret_strings(v, out)),
        _ => {}
    }
}

fn describe(value: &Value) -> String {
    let text = match value {
        Value::String(s) => format!("string '{s}'"),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "a dictionary".to_string(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::Null => "null".to_string(),
    };
    if text.len() > 120 {
        format!("{}...", text.chars().take(117).collect::<String>())
    } else {
        text
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    #![allow(dead_code)] // schema-only test types
    use super::*;
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
