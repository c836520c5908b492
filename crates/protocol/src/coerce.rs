//! The walk over given arguments and the JSON schema of their type: the usual Ansible string
//! forms converted ("5", "yes", "a,b"), unknown and missing arguments, bounds and choices
//! refused with the argument's path, secret values collected and masked.

use serde_json::{Map, Value};

use crate::MASK;
use crate::args::as_bool;
use crate::schema::{Flat, Schema};

/// What a walk found: errors for people, and the values of secret arguments.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) errors: Vec<String>,
    pub(crate) secrets: Vec<String>,
}

impl State {
    /// Records a value of the wrong type and hands the value back unchanged.
    fn wrong_type(&mut self, path: &str, secret: bool, (expected, given): (&str, Value)) -> Value {
        self.errors.push(format!(
            "argument '{path}' must be {expected}, got {}",
            shown(secret, &given)
        ));
        given
    }
}

/// Walks given arguments beside the JSON schema of their type.
pub(crate) struct Walker<'a> {
    pub(crate) schema: Schema<'a>,
}

impl Walker<'_> {
    fn resolve(&self, schema: &Value) -> Flat {
        self.schema.flat(schema)
    }

    /// Coerces an object's members; `top` objects refuse unknown keys whatever the schema says
    /// (flattened structs cannot carry `deny_unknown_fields`).
    pub(crate) fn object(
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
        let coerced = match resolved.kind() {
            Some("array") => self.array(given, &resolved, path, state),
            Some("object") => {
                let given = match given {
                    Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
                    other => other,
                };
                match given {
                    Value::Object(map) => self.object(map, schema, path, false, state),
                    other => state.wrong_type(path, secret, ("a dictionary", other)),
                }
            }
            kind => {
                coerce_scalar(kind, given).unwrap_or_else(|e| state.wrong_type(path, secret, e))
            }
        };
        check_bounds(&resolved, &coerced, path, secret, state);
        check_choices(&resolved, &coerced, path, secret, state);
        coerced
    }

    /// A list, each item coerced by the items' schema. Ansible's list type splits "a,b" on
    /// commas.
    fn array(&self, given: Value, resolved: &Flat, path: &str, state: &mut State) -> Value {
        let items: Vec<Value> = match given {
            Value::Array(items) => items,
            Value::String(ref s) => s
                .split(',')
                .map(|p| Value::String(p.trim().to_string()))
                .filter(|p| p.as_str() != Some(""))
                .collect(),
            other => {
                state.wrong_type(path, resolved.is_secret(), ("a list", other));
                return Value::Null;
            }
        };
        match resolved.get("items") {
            Some(item_schema) => Value::Array(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| self.value(v, item_schema, &format!("{path}[{i}]"), state))
                    .collect(),
            ),
            None => Value::Array(items),
        }
    }

    /// A copy of `value` with every secret property replaced by the mask.
    pub(crate) fn masked(&self, value: &Value, schema: &Value) -> Value {
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

/// A scalar of the schema's type, converted the way Ansible converts module arguments
/// ("5" is an integer, "yes" a boolean). Err holds what was expected and the value as given.
fn coerce_scalar(kind: Option<&str>, given: Value) -> Result<Value, (&'static str, Value)> {
    match kind {
        Some("boolean") => as_bool(&given)
            .map(Value::Bool)
            .ok_or(("a boolean (true/false, yes/no)", given)),
        Some("integer") => match &given {
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(given),
            Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => {
                Ok(Value::from(n.as_f64().unwrap_or_default() as i64))
            }
            Value::String(s) => match (s.trim().parse::<i64>(), s.trim().parse::<u64>()) {
                (Ok(i), _) => Ok(Value::from(i)),
                (_, Ok(u)) => Ok(Value::from(u)),
                _ => Err(("an integer", given)),
            },
            _ => Err(("an integer", given)),
        },
        Some("number") => match &given {
            Value::Number(_) => Ok(given),
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .map(Value::from)
                .map_err(|_| ("a number", given)),
            _ => Err(("a number", given)),
        },
        Some("string") => match &given {
            Value::String(_) => Ok(given),
            Value::Number(n) => Ok(Value::String(n.to_string())),
            _ => Err(("a string", given)),
        },
        _ => Ok(given),
    }
}

/// A number outside the schema's minimum and maximum is an error.
fn check_bounds(resolved: &Flat, coerced: &Value, path: &str, secret: bool, state: &mut State) {
    let Some(n) = coerced
        .as_f64()
        .filter(|_| matches!(resolved.kind(), Some("integer" | "number")))
    else {
        return;
    };
    let min = resolved.get("minimum").and_then(Value::as_f64);
    let max = resolved.get("maximum").and_then(Value::as_f64);
    if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
        let bound = |b: Option<f64>| b.map_or_else(|| "any".to_string(), |b| b.to_string());
        state.errors.push(format!(
            "argument '{path}' must be between {} and {}, got {}",
            bound(min),
            bound(max),
            shown(secret, coerced)
        ));
    }
}

/// A value outside the schema's choices is an error.
fn check_choices(resolved: &Flat, coerced: &Value, path: &str, secret: bool, state: &mut State) {
    if let Some(choices) = resolved.choices()
        && !coerced.is_null()
        && !choices.contains(coerced)
    {
        let list: Vec<String> = choices
            .iter()
            .map(|c| c.as_str().map_or_else(|| c.to_string(), str::to_string))
            .collect();
        state.errors.push(format!(
            "value of '{path}' must be one of: {}; got {}",
            list.join(", "),
            shown(secret, coerced)
        ));
    }
}

/// A value as an error message may show it: never a secret's.
fn shown(secret: bool, value: &Value) -> String {
    if secret {
        "a value (hidden: secret)".to_string()
    } else {
        describe(value)
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

pub(crate) fn describe(value: &Value) -> String {
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
