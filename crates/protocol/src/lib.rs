//! The Ansible binary-module protocol, and nothing about databases.
//!
//! Ansible copies a binary module to the target and runs it with one argument: the path of a
//! JSON file holding the task's arguments plus `_ansible_*` keys. The module prints exactly one
//! JSON object on stdout. Ansible validates nothing for binary modules (no types, no required
//! arguments, no choices, no `no_log`), so this crate does all of it, driven by the same
//! schemars schema that documents the module:
//!
//! - [`args`] coerces Ansible's string forms (`"yes"`, `"5"`) to the schema's types, refuses
//!   unknown and missing arguments by name, and finds the secret values to mask;
//! - [`docs`] renders the `plugins/modules/<name>.yml` sidecar (DOCUMENTATION / EXAMPLES /
//!   RETURN) that `ansible-doc` reads;
//! - [`run_main`] ties it together: every outcome, including a panic, becomes one JSON object
//!   with `changed`, `failed` and `msg`, scrubbed of every secret value.
//!
//! A module is a type implementing [`Module`]; its binary is one line: `run_main::<M>()`.
//! The shipped collection puts every module in one binary instead ([`run_multi_call`]): it
//! picks the module by the `_ansible_module_name` Ansible adds to the arguments, or by the
//! name it was started as.

pub mod args;
mod coerce;
pub mod docs;
pub mod schema;

use std::any::Any;
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

pub use args::{ArgsError, ParsedArgs};
pub use docs::{Fragment, ModuleDoc, Support};

/// What Ansible told the module about this run (the `_ansible_*` keys we honour).
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// `--check`: report what would change, change nothing.
    pub check_mode: bool,
    /// `--diff`: return `diff: {before, after}` where something changes.
    pub diff: bool,
    /// Task-level `no_log: true`: keep arguments out of everything we write.
    pub no_log: bool,
    /// Number of `-v` flags; 3 and more adds debugging detail to the result.
    pub verbosity: u8,
    /// The module's name as Ansible knows it (argv[0] is a temp file name).
    pub module_name: Option<String>,
    /// Ansible's per-task temp dir on the target, if it gave one.
    pub tmpdir: Option<String>,
    /// Whether Ansible asks modules to return `invocation` (2.21+).
    pub inject_invocation: bool,
}

/// A before/after pair that Ansible renders as a unified diff in `--diff` mode.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Diff {
    pub before: String,
    pub after: String,
    pub before_header: String,
    pub after_header: String,
}

/// The successful outcome of a module run.
#[derive(Debug, Clone)]
pub struct Report<O> {
    pub changed: bool,
    pub msg: String,
    pub diff: Option<Diff>,
    pub warnings: Vec<String>,
    /// Module-specific result fields, merged at the top level of the JSON object.
    pub output: O,
}

/// One module: its typed arguments, its typed result, its docs, and one call into the core.
pub trait Module {
    /// Arguments as the task gives them; the schema drives coercion, validation and docs.
    type Args: DeserializeOwned + JsonSchema;
    /// Result fields; the schema documents RETURN.
    type Output: Serialize + JsonSchema;
    /// Error type of the core call; its `Display` is the failure `msg`.
    type Error: std::error::Error;

    fn doc() -> ModuleDoc;
    fn run(args: Self::Args, ctx: &Context) -> Result<Report<Self::Output>, Self::Error>;

    /// Result fields worth keeping with a failure (for example the partial work done).
    /// Most modules have none.
    fn failure_fields(_error: &Self::Error) -> Map<String, Value> {
        Map::new()
    }
}

/// Entry point of every module binary. Never returns.
///
/// `--doc` prints the sidecar YAML, `--schema` the JSON schema of the arguments; otherwise the
/// one argument is Ansible's args file. Exit code: 0 on success, 1 on failure (Ansible reads
/// only the JSON, people and shell scripts read the code).
pub fn run_main<M: Module>() -> ! {
    let argv: Vec<String> = std::env::args().collect();
    let stdout = std::io::stdout();
    let code = match argv.get(1).map(String::as_str) {
        Some("--doc") => print_text(&docs::sidecar_yaml::<M>()),
        // The doc fragments this module extends, as {file name: Python text}, for xtask.
        Some("--doc-fragments") => print_text(
            &serde_json::to_string(
                &M::doc()
                    .fragments
                    .iter()
                    .map(|f| (f.file_name(), f.python()))
                    .collect::<std::collections::BTreeMap<_, _>>(),
            )
            .unwrap_or_default(),
        ),
        Some("--schema") => print_text(
            &serde_json::to_string_pretty(&schemars::schema_for!(M::Args)).unwrap_or_default(),
        ),
        Some(path) => {
            let text = std::fs::read(path).map_err(|e| {
                format!("unable to read the module arguments file '{path}': {e}; run this binary through Ansible, or give it a JSON file of arguments")
            });
            run_to_writer::<M>(text, &mut stdout.lock())
        }
        None => run_to_writer::<M>(
            Err(format!(
                "no arguments file given; usage: {} ARGS.json | --doc | --schema",
                M::doc().name
            )),
            &mut stdout.lock(),
        ),
    };
    std::process::exit(code)
}

/// One module of a multi-call binary: its name (from its [`ModuleDoc`]) and its [`run_to_writer`].
#[derive(Clone, Copy)]
pub struct Entry {
    pub name: fn() -> &'static str,
    pub run: fn(Result<Vec<u8>, String>, &mut dyn Write) -> i32,
}

/// The [`Entry`] of module `M`.
pub const fn entry<M: Module>() -> Entry {
    Entry {
        name: doc_name::<M>,
        run: run_to_writer::<M>,
    }
}

fn doc_name<M: Module>() -> &'static str {
    M::doc().name
}

/// `main` of a binary that holds several modules. Ansible names the module in the arguments
/// (`_ansible_module_name`, possibly fully qualified: the last dotted part counts); without it,
/// the file name the binary was started as does (a link named `db_backup`, or Ansible's
/// `AnsiballZ_db_backup`). An unknown name is one JSON failure listing the modules held.
pub fn run_multi_call(modules: &[Entry]) -> ! {
    let argv: Vec<String> = std::env::args().collect();
    let args_file = match argv.get(1) {
        Some(path) => std::fs::read(path).map_err(|e| {
            format!("unable to read the module arguments file '{path}': {e}; run this binary through Ansible, or give it a JSON file of arguments")
        }),
        None => Err(
            "no arguments file given; usage: dbcadence-modules ARGS.json, run as one of its modules"
                .to_string(),
        ),
    };
    let code = multi_call_to_writer(
        modules,
        argv.first().map(String::as_str),
        args_file,
        &mut std::io::stdout().lock(),
    );
    std::process::exit(code)
}

/// [`run_multi_call`] without the process: `invoked_as` is argv[0].
pub fn multi_call_to_writer(
    modules: &[Entry],
    invoked_as: Option<&str>,
    args_file: Result<Vec<u8>, String>,
    out: &mut dyn Write,
) -> i32 {
    let held = modules
        .iter()
        .map(|m| (m.name)())
        .collect::<Vec<_>>()
        .join(", ");
    let named = args_file
        .as_ref()
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(bytes).ok())
        .and_then(|v| v.get("_ansible_module_name")?.as_str().map(str::to_string));
    let file_name = invoked_as
        .and_then(|a| std::path::Path::new(a).file_name()?.to_str())
        .map(|f| f.trim_start_matches("AnsiballZ_").to_string());
    let wanted = named
        .as_deref()
        .map(|n| n.rsplit('.').next().unwrap_or(n).to_string())
        .or(file_name)
        .unwrap_or_default();
    match modules.iter().find(|m| (m.name)() == wanted) {
        Some(module) => (module.run)(args_file, out),
        None => {
            let msg = format!(
                "this binary holds the modules {held}, not '{wanted}'; run it as one of them (Ansible names the module in _ansible_module_name)"
            );
            let _ = writeln!(
                out,
                "{}",
                json!({"failed": true, "changed": false, "msg": msg})
            );
            1
        }
    }
}

fn print_text(text: &str) -> i32 {
    println!("{text}");
    0
}

/// Runs a module on the raw args file content and writes exactly one JSON object to `out`.
/// Returns the exit code. Public so that tests can drive modules without a process.
pub fn run_to_writer<M: Module>(args_file: Result<Vec<u8>, String>, out: &mut dyn Write) -> i32 {
    let mut secrets: Vec<String> = Vec::new();
    let result = outcome::<M>(args_file, &mut secrets);
    let failed = result
        .get("failed")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let scrubbed = scrub_secrets(result, &secrets);
    let line = serde_json::to_string(&scrubbed).unwrap_or_else(|_| {
        r#"{"failed": true, "changed": false, "msg": "unable to serialize the module result"}"#
            .to_string()
    });
    // A closed stdout leaves nothing useful to do: Ansible will report "no JSON".
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    i32::from(failed)
}

/// Everything that can happen, as one JSON object (before secret scrubbing).
fn outcome<M: Module>(args_file: Result<Vec<u8>, String>, secrets: &mut Vec<String>) -> Value {
    let bytes = match args_file {
        Ok(bytes) => bytes,
        Err(msg) => return failure(msg),
    };
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            return failure(format!(
                "unable to read the module arguments: the file is not valid UTF-8 ({e}); pass arguments as UTF-8 text"
            ));
        }
    };
    let parsed = match args::parse::<M::Args>(&text) {
        Ok(parsed) => parsed,
        Err(ArgsError {
            msg,
            secrets: found,
        }) => {
            *secrets = found;
            return failure(msg);
        }
    };
    secrets.clone_from(&parsed.secrets);
    let ctx = parsed.context.clone();
    // With task-level no_log the arguments are not echoed at all, not even masked.
    let invocation =
        (ctx.inject_invocation && !ctx.no_log).then(|| json!({"module_args": parsed.masked_args}));

    let started = std::time::Instant::now();
    let run = catch_panic(|| M::run(parsed.args, &ctx));
    let seconds = started.elapsed().as_secs_f64();
    let mut object = match run {
        Ok(Ok(report)) => success(report, &ctx),
        Ok(Err(error)) => {
            let mut object = match failure(error.to_string()) {
                Value::Object(map) => map,
                _ => Map::new(),
            };
            object.extend(M::failure_fields(&error));
            Value::Object(object)
        }
        Err(panic_msg) => failure(format!(
            "the module crashed: {panic_msg}; this is a dbcadence bug, please report it with the task (secrets removed)"
        )),
    };
    if let Value::Object(map) = &mut object {
        if let Some(invocation) = invocation {
            map.insert("invocation".into(), invocation);
        }
        // -vvv: what the module understood of the run, for people debugging a task.
        if ctx.verbosity >= 3 {
            map.insert(
                "debug".into(),
                json!({
                    "module": ctx.module_name.clone().unwrap_or_else(|| M::doc().name.to_string()),
                    "check_mode": ctx.check_mode,
                    "diff_mode": ctx.diff,
                    "duration_seconds": (seconds * 1000.0).round() / 1000.0,
                }),
            );
        }
    }
    object
}

fn success<O: Serialize>(report: Report<O>, ctx: &Context) -> Value {
    let mut map = match serde_json::to_value(&report.output) {
        Ok(Value::Object(map)) => map,
        Ok(Value::Null) => Map::new(),
        Ok(other) => {
            let mut map = Map::new();
            map.insert("result".into(), other);
            map
        }
        Err(e) => return failure(format!("unable to serialize the module result: {e}")),
    };
    map.insert("changed".into(), Value::Bool(report.changed));
    map.insert("failed".into(), Value::Bool(false));
    map.insert("msg".into(), Value::String(report.msg));
    if ctx.diff
        && let Some(diff) = report.diff
    {
        map.insert(
            "diff".into(),
            serde_json::to_value(diff).unwrap_or(Value::Null),
        );
    }
    if !report.warnings.is_empty() {
        map.insert("warnings".into(), json!(report.warnings));
    }
    Value::Object(map)
}

fn failure(msg: String) -> Value {
    json!({"failed": true, "changed": false, "msg": msg})
}

/// The last panic message, captured by our hook instead of being printed to stderr with a
/// backtrace (which Ansible would show as module_stderr, secrets and all).
static PANIC_MESSAGE: Mutex<Option<String>> = Mutex::new(None);

fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let text = format!("{}{location}", payload_text(info.payload()));
        if let Ok(mut slot) = PANIC_MESSAGE.lock() {
            *slot = Some(text);
        }
    }));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    panic::set_hook(previous);
    result.map_err(|payload| {
        PANIC_MESSAGE
            .lock()
            .ok()
            .and_then(|mut slot| slot.take())
            .unwrap_or_else(|| payload_text(payload.as_ref()))
    })
}

fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// The text that replaces a secret value wherever it appears in the result.
pub const MASK: &str = "********";

/// Replaces every occurrence of every secret inside every string of `value` (keys included),
/// like Ansible's own no_log scrubbing: a secret that slipped into an error message from a
/// driver or a child's stderr still never leaves the module.
pub fn scrub_secrets(value: Value, secrets: &[String]) -> Value {
    let secrets: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    if secrets.is_empty() {
        return value;
    }
    scrub(value, &secrets)
}

fn scrub(value: Value, secrets: &[&String]) -> Value {
    match value {
        Value::String(s) => Value::String(scrub_str(s, secrets)),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| scrub(v, secrets)).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (scrub_str(k, secrets), scrub(v, secrets)))
                .collect(),
        ),
        other => other,
    }
}

fn scrub_str(mut s: String, secrets: &[&String]) -> String {
    for secret in secrets {
        if s.contains(secret.as_str()) {
            s = s.replace(secret.as_str(), MASK);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemars::JsonSchema;
    use serde::Deserialize;

    #[derive(Deserialize, JsonSchema)]
    struct EchoArgs {
        /// Name to greet.
        name: String,
        /// How many times.
        #[serde(default)]
        count: u32,
        /// Password.
        #[serde(default)]
        #[schemars(extend("x-secret" = true))]
        password: Option<String>,
        /// Panic on purpose.
        #[serde(default)]
        explode: bool,
    }

    #[derive(Serialize, JsonSchema)]
    struct EchoOut {
        /// What was said.
        said: String,
    }

    #[derive(Debug)]
    struct EchoError(String);
    impl std::fmt::Display for EchoError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl std::error::Error for EchoError {}

    struct Echo;
    impl Module for Echo {
        type Args = EchoArgs;
        type Output = EchoOut;
        type Error = EchoError;
        fn doc() -> ModuleDoc {
            ModuleDoc {
                name: "echo",
                short_description: "Echo",
                description: &["Echoes."],
                examples: "- echo: {name: x}\n",
                notes: &[],
                check_mode: Support::Full,
                diff_mode: Support::None,
                requirements: &[],
                fragments: &[],
            }
        }
        fn run(args: EchoArgs, ctx: &Context) -> Result<Report<EchoOut>, EchoError> {
            if args.explode {
                panic!("boom with {}", args.password.clone().unwrap_or_default());
            }
            if args.name == "fail" {
                return Err(EchoError(format!(
                    "unable to greet: password {} rejected",
                    args.password.unwrap_or_default()
                )));
            }
            Ok(Report {
                changed: !ctx.check_mode,
                msg: format!("said hello {} times", args.count),
                diff: Some(Diff {
                    before: "a\n".into(),
                    after: "b\n".into(),
                    before_header: "x".into(),
                    after_header: "x".into(),
                }),
                warnings: vec![],
                output: EchoOut {
                    said: format!("hello {}", args.name),
                },
            })
        }
    }

    #[test]
    fn a_multi_call_binary_runs_the_module_ansible_names_or_the_one_it_runs_as() {
        let modules = [entry::<Echo>()];
        let call = |argv0: &str, text: &str| {
            let mut out = Vec::new();
            let code = multi_call_to_writer(
                &modules,
                Some(argv0),
                Ok(text.as_bytes().to_vec()),
                &mut out,
            );
            (
                code,
                serde_json::from_str::<Value>(&String::from_utf8(out).unwrap()).unwrap(),
            )
        };
        // Ansible's cache file name says nothing; the arguments name the module, qualified.
        let (code, v) = call(
            "/root/.ansible/dbcadence/modules/dbcadence-modules-0123",
            r#"{"name": "x", "_ansible_module_name": "dbcadence.maintenance.echo"}"#,
        );
        assert_eq!((code, v["said"].as_str()), (0, Some("hello x")), "{v}");
        // Started through a link (or Ansible's AnsiballZ_ copy) without the key.
        let (code, v) = call("/tmp/x/AnsiballZ_echo", r#"{"name": "y"}"#);
        assert_eq!((code, v["said"].as_str()), (0, Some("hello y")), "{v}");
        // Anything else is one JSON failure naming what the binary holds.
        let (code, v) = call(
            "/usr/bin/dbcadence-modules",
            r#"{"_ansible_module_name": "db_nope"}"#,
        );
        assert_eq!((code, v["failed"].as_bool()), (1, Some(true)));
        let msg = v["msg"].as_str().unwrap();
        assert!(
            msg.contains("holds the modules echo, not 'db_nope'"),
            "{msg}"
        );
    }

    fn run(text: &str) -> (i32, Value) {
        let mut out = Vec::new();
        let code = run_to_writer::<Echo>(Ok(text.as_bytes().to_vec()), &mut out);
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out.lines().count(), 1, "exactly one line of JSON: {out}");
        (code, serde_json::from_str(&out).unwrap())
    }

    #[test]
    fn success_merges_output_and_honours_check_and_diff() {
        let (code, v) = run(
            r#"{"name": "bob", "count": "5", "_ansible_check_mode": true, "_ansible_diff": true, "_ansible_future_key": 1}"#,
        );
        assert_eq!(code, 0);
        assert_eq!(v["failed"], false);
        assert_eq!(v["changed"], false, "check mode reached the module");
        assert_eq!(v["said"], "hello bob");
        assert_eq!(v["msg"], "said hello 5 times");
        assert_eq!(v["diff"]["after"], "b\n");
    }

    #[test]
    fn no_diff_unless_asked() {
        let (_, v) = run(r#"{"name": "bob"}"#);
        assert!(v.get("diff").is_none());
        assert_eq!(v["changed"], true);
    }

    #[test]
    fn bad_json_is_one_failure_object() {
        let (code, v) = run("{not json");
        assert_eq!(code, 1);
        assert_eq!(v["failed"], true);
        assert!(v["msg"].as_str().unwrap().contains("not valid JSON"), "{v}");
    }

    #[test]
    fn invalid_utf8_is_a_failure() {
        let mut out = Vec::new();
        let code = run_to_writer::<Echo>(Ok(vec![b'{', 0xff, b'}']), &mut out);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(code, 1);
        assert!(v["msg"].as_str().unwrap().contains("UTF-8"));
    }

    #[test]
    fn unknown_argument_names_the_accepted_ones() {
        let (_, v) = run(r#"{"name": "bob", "colour": "red"}"#);
        let msg = v["msg"].as_str().unwrap();
        assert!(msg.contains("colour"), "{msg}");
        assert!(msg.contains("count, explode, name, password"), "{msg}");
    }

    #[test]
    fn wrong_type_and_missing_required_name_the_argument() {
        let (_, v) = run(r#"{"name": "bob", "count": "many"}"#);
        assert!(v["msg"].as_str().unwrap().contains("'count'"), "{v}");
        let (_, v) = run(r#"{"count": 1}"#);
        assert!(
            v["msg"]
                .as_str()
                .unwrap()
                .contains("missing required arguments: name"),
            "{v}"
        );
    }

    #[test]
    fn panic_becomes_failure_json_without_the_secret() {
        let (code, v) = run(r#"{"name": "x", "explode": "yes", "password": "hunter2-secret"}"#);
        assert_eq!(code, 1);
        let msg = v["msg"].as_str().unwrap();
        assert!(msg.contains("crashed: boom with ********"), "{msg}");
        assert!(!v.to_string().contains("hunter2-secret"));
    }

    #[test]
    fn error_messages_are_scrubbed_and_invocation_masked() {
        let (_, v) = run(
            r#"{"name": "fail", "password": "hunter2-secret", "_ansible_inject_invocation": true}"#,
        );
        assert_eq!(v["failed"], true);
        assert!(!v.to_string().contains("hunter2-secret"), "{v}");
        assert_eq!(v["invocation"]["module_args"]["password"], MASK);
    }

    #[test]
    fn no_log_suppresses_invocation_and_verbosity_adds_debug() {
        let (_, v) =
            run(r#"{"name": "bob", "_ansible_inject_invocation": true, "_ansible_no_log": true}"#);
        assert!(v.get("invocation").is_none(), "{v}");
        assert!(v.get("debug").is_none());
        let (_, v) =
            run(r#"{"name": "bob", "_ansible_verbosity": 3, "_ansible_check_mode": true}"#);
        assert_eq!(v["debug"]["module"], "echo");
        assert_eq!(v["debug"]["check_mode"], true);
    }

    #[test]
    fn wrong_type_of_a_secret_does_not_echo_it() {
        let (_, v) = run(r#"{"name": "x", "password": {"nested": "hunter2-secret"}}"#);
        assert_eq!(v["failed"], true);
        assert!(!v.to_string().contains("hunter2-secret"), "{v}");
    }
}
