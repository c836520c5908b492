//! Classifying databases: environment (labels first, then naming rules), and backup or
//! shadow copies with their original.

use regex::Regex;

use super::*;
use crate::{Error, Result};

/// Normalises environment spellings (prod, PRD, live → production...).
pub fn normalize_env(value: &str) -> String {
    let lower = value.trim().to_ascii_lowercase();
    match lower.as_str() {
        "prod" | "prd" | "live" | "production" => "production".into(),
        "stag" | "stage" | "stg" | "staging" | "preprod" | "uat" => "staging".into(),
        "dev" | "development" | "test" | "testing" | "qa" | "sandbox" => "development".into(),
        _ => lower,
    }
}

/// Compiled naming rules.
pub struct Classifier {
    environments: Vec<(Regex, String)>,
    copies: Vec<(Regex, String)>,
}

impl Classifier {
    pub fn new(rules: &NamingRules) -> Result<Self> {
        let compile = |p: &str| {
            Regex::new(p).map_err(|e| Error::invalid("naming rule", format!("'{p}': {e}")))
        };
        let environments = rules
            .environments
            .iter()
            .map(|r| Ok((compile(&r.pattern)?, normalize_env(&r.env))))
            .collect::<Result<Vec<_>>>()?;
        let copies = rules
            .copies
            .iter()
            .map(|r| {
                let re = compile(&r.pattern)?;
                if !re.capture_names().any(|n| n == Some("original")) {
                    return Err(Error::invalid(
                        "naming rule",
                        format!(
                            "copy pattern '{}' has no (?P<original>...) group",
                            r.pattern
                        ),
                    ));
                }
                Ok((re, r.kind.clone()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Classifier {
            environments,
            copies,
        })
    }

    pub fn env_of_name(&self, name: &str) -> Option<String> {
        self.environments
            .iter()
            .find(|(re, _)| re.is_match(name))
            .map(|(_, env)| env.clone())
    }

    /// The copy flag of `name`, if a rule matches; `present` tells whether the original exists.
    pub fn copy_of(&self, name: &str, present: impl Fn(&str) -> bool) -> Option<CopyFlag> {
        self.copies.iter().find_map(|(re, kind)| {
            let original = re.captures(name)?.name("original")?.as_str().to_string();
            Some(CopyFlag {
                kind: kind.clone(),
                original_present: present(&original),
                original,
            })
        })
    }
}
