//! Reading schemars schemas: a property's `$ref`, nullable `anyOf` and `allOf` (what
//! `Option<T>` and `#[serde(flatten)]` produce) folded into one flat object, for argument
//! parsing and for the generated docs alike.

use serde_json::{Map, Value};

/// The schema keyword that marks an argument as secret:
/// `#[schemars(extend("x-secret" = true))]` on the field.
pub const SECRET_KEYWORD: &str = "x-secret";

/// A root schema, whose `$defs` resolve references.
pub struct Schema<'a> {
    defs: Option<&'a Map<String, Value>>,
}

/// One property's schema with references and combinators folded in.
pub struct Flat(pub Map<String, Value>);

impl<'a> Schema<'a> {
    pub fn new(root: &'a Value) -> Self {
        Schema {
            defs: root.get("$defs").and_then(Value::as_object),
        }
    }

    pub fn flat(&self, schema: &Value) -> Flat {
        let mut out = Map::new();
        self.fold(schema, &mut out, 0);
        Flat(out)
    }

    fn fold(&self, schema: &Value, out: &mut Map<String, Value>, depth: usize) {
        let Some(map) = schema.as_object() else {
            return;
        };
        if depth > 16 {
            return; // recursive types: nothing in our arguments nests this deep
        }
        if let Some(name) = map
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.rsplit('/').next())
            && let Some(def) = self.defs.and_then(|d| d.get(name))
        {
            self.fold(def, out, depth + 1);
        }
        for key in ["anyOf", "allOf"] {
            if let Some(Value::Array(branches)) = map.get(key) {
                let non_null: Vec<&Value> = branches
                    .iter()
                    .filter(|b| b.get("type").and_then(Value::as_str) != Some("null"))
                    .collect();
                if key == "allOf" || non_null.len() == 1 {
                    non_null
                        .into_iter()
                        .for_each(|b| self.fold(b, out, depth + 1));
                }
            }
        }
        for (k, v) in map {
            match (k.as_str(), out.get_mut(k)) {
                ("$ref" | "anyOf" | "allOf", _) => {}
                ("properties", Some(Value::Object(props))) => {
                    if let Value::Object(more) = v {
                        props.extend(more.clone());
                    }
                }
                ("required", Some(Value::Array(req))) => {
                    if let Value::Array(more) = v {
                        req.extend(more.iter().cloned());
                    }
                }
                _ => {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

impl Flat {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// The JSON type, `null` left out; objects and enumerations without a `type` count as
    /// object and string.
    pub fn kind(&self) -> Option<&str> {
        match self.0.get("type") {
            Some(Value::String(t)) => Some(t.as_str()),
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null"),
            _ if self.0.contains_key("properties") => Some("object"),
            _ if self.choices().is_some() => Some("string"),
            _ => None,
        }
    }

    /// Accepted values of an enumeration (`enum`, or `oneOf` constants when variants have docs).
    pub fn choices(&self) -> Option<Vec<Value>> {
        if let Some(Value::Array(values)) = self.0.get("enum") {
            return Some(values.iter().filter(|v| !v.is_null()).cloned().collect());
        }
        self.0
            .get("oneOf")?
            .as_array()?
            .iter()
            .map(|v| v.get("const").cloned())
            .collect()
    }

    pub fn is_secret(&self) -> bool {
        self.0.get(SECRET_KEYWORD).and_then(Value::as_bool) == Some(true)
    }

    pub fn properties(&self) -> Option<&Map<String, Value>> {
        self.0.get("properties").and_then(Value::as_object)
    }

    pub fn required(&self) -> Vec<&str> {
        self.0
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }
}
