//! Which databases follow which template: the inventory groups a database belongs to (the
//! same names for Ansible's inventory script, the lab's inventory and schedule assignments),
//! Ansible-style group patterns, and the binding of a database to its template.

use std::collections::BTreeMap;

use super::{ScheduleFile, Template};

/// The inventory groups a database belongs to (the same names the inventory script gives
/// Ansible): all, the engine, env_<env>, tier_<tier>, instance_<id>, copies.
pub fn groups_of(
    instance: &str,
    engine: &str,
    env: &str,
    labels: &BTreeMap<String, String>,
    copy: bool,
) -> Vec<String> {
    let mut groups = vec![
        "all".to_string(),
        engine.to_string(),
        format!("env_{}", group_safe(env)),
        format!("instance_{}", group_safe(instance)),
    ];
    if let Some(tier) = labels.get("tier") {
        groups.push(format!("tier_{}", group_safe(tier)));
    }
    if copy {
        groups.push("copies".into());
    }
    groups
}

/// Whether a member of `groups` is selected by an Ansible-style pattern: `a:b` (or `a,b`) is
/// a union, `:&c` an intersection, `:!d` an exclusion; `*` matches any run of characters.
/// `postgresql:&env_production` selects PostgreSQL databases in production.
pub fn pattern_matches(pattern: &str, groups: &[String]) -> bool {
    let has = |term: &str| groups.iter().any(|g| glob(term, g));
    let (mut any_plain, mut union) = (false, false);
    let (mut all_required, mut excluded) = (true, false);
    for term in pattern
        .split([':', ','])
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        if let Some(term) = term.strip_prefix('&') {
            all_required &= has(term);
        } else if let Some(term) = term.strip_prefix('!') {
            excluded |= has(term);
        } else {
            any_plain = true;
            union |= has(term);
        }
    }
    (union || !any_plain) && all_required && !excluded
}

fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            let Some(rest) = text.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|&i| rest.is_char_boundary(i))
                .any(|i| glob(tail, &rest[i..]))
        }
    }
}

/// A group name Ansible accepts without warnings.
pub fn group_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A database as assignments see it.
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    pub instance: &'a str,
    pub engine: &'a str,
    pub env: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    /// Flagged as a copy (backup, shadow) by the inventory.
    pub copy: bool,
}

/// The template a database follows: the first assignment that matches it; without
/// assignments, the first template of its engine and environment (copies follow none).
pub fn template_for<'s>(schedule: &'s ScheduleFile, db: &Member) -> Option<&'s Template> {
    let engine_fits = |t: &Template| t.engine.is_none_or(|e| e.as_str() == db.engine);
    if schedule.assignments.is_empty() {
        if db.copy {
            return None;
        }
        return schedule
            .templates
            .iter()
            .find(|t| engine_fits(t) && t.env.as_deref().is_none_or(|e| e == db.env));
    }
    let groups = groups_of(db.instance, db.engine, db.env, db.labels, db.copy);
    schedule.assignments.iter().find_map(|a| {
        let group_ok = a.group.as_ref().is_none_or(|g| pattern_matches(g, &groups));
        let labels_ok = a.labels.iter().all(|(k, v)| {
            (k == "env" && v == db.env) || db.labels.get(k).is_some_and(|have| have == v)
        });
        let copy_ok = !db.copy || a.group.as_deref() == Some("copies");
        let template = schedule.templates.iter().find(|t| t.name == a.template)?;
        (group_ok && labels_ok && copy_ok && engine_fits(template)).then_some(template)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansible_patterns() {
        let groups: Vec<String> = ["all", "postgresql", "env_production", "tier_gold"]
            .map(String::from)
            .to_vec();
        assert!(pattern_matches("postgresql:&env_production", &groups));
        assert!(!pattern_matches("mysql:&env_production", &groups));
        assert!(pattern_matches("mysql:postgresql", &groups));
        assert!(pattern_matches("mysql,postgresql", &groups));
        assert!(!pattern_matches("all:!tier_gold", &groups));
        assert!(pattern_matches("env_prod*", &groups));
        assert!(pattern_matches("&tier_*", &groups));
        assert!(!pattern_matches("env_staging", &groups));
    }
}
