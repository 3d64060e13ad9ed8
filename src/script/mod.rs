//! The one hardened rhai engine. Scripts get only the language core, strings, arrays, maps
//! and math, plus the host functions of SPEC §5; every host function goes through a
//! [`HostApi`] handed in by the orchestrator, which checks scope and writes the audit log.
//! There is no `eval`, no `import` (the `no_module` feature), no file or process access,
//! and hard limits on operations, call depth, expression depth, sizes and wall-clock time.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use rhai::packages::{
    ArithmeticPackage, BasicArrayPackage, BasicIteratorPackage, BasicMapPackage, BasicMathPackage,
    BasicStringPackage, LanguageCorePackage, LogicPackage, MoreStringPackage, Package,
};
use rhai::{Dynamic, Engine, EvalAltResult, ImmutableString, Map, Position, Scope, Shared, AST};
use serde_json::Value;

/// Hard limits of the engine. Generous for runbooks, small enough that a hostile script
/// cannot hold a worker thread or much memory.
pub mod limits {
    /// Operations one host's script may perform.
    pub const MAX_OPERATIONS: u64 = 20_000_000;
    /// Nested function calls.
    pub const MAX_CALL_LEVELS: usize = 48;
    /// Nesting of expressions (global level, inside functions).
    pub const MAX_EXPR_DEPTH: (usize, usize) = (64, 32);
    /// Bytes in one string.
    pub const MAX_STRING_SIZE: usize = 4 * 1024 * 1024;
    /// Items in one array. rhai re-measures an array on every push, so the cost of reaching
    /// the limit grows with its square: 10,000 is reached in well under a second.
    pub const MAX_ARRAY_SIZE: usize = 10_000;
    /// Entries in one map.
    pub const MAX_MAP_SIZE: usize = 10_000;
    /// Variables alive at once.
    pub const MAX_VARIABLES: usize = 1_000;
    /// Functions a script may define.
    pub const MAX_FUNCTIONS: usize = 200;
}

/// The result of `sh(cmd)`.
#[derive(Debug, Clone, Default)]
pub struct ShOutput {
    pub code: i64,
    pub stdout: String,
    pub stderr: String,
    /// Whether stdout or stderr was cut at the runbook's `output.script_max`; the log
    /// still has the whole output, up to its own limits.
    pub truncated: bool,
}

/// The result of `http(...)`.
#[derive(Debug, Clone, Default)]
pub struct HttpOutput {
    pub status: i64,
    pub body: String,
}

/// Why a host function did not do its work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionError {
    /// The script must stop, and cannot catch this: a scope violation, a host key mismatch,
    /// an audit log that cannot be written, cancellation, `fail()`.
    Fatal(String),
    /// The action failed (a connection refused, a timeout, a non-zero `sh_ok`); the script
    /// may catch it with `try`/`catch`.
    Failed(String),
}

/// What a script may do to the world. Implemented by the orchestrator for one host of one
/// run; every call is scope-checked and audited there.
pub trait HostApi: Send + Sync {
    fn sh(&self, command: &str) -> Result<ShOutput, ActionError>;
    fn http(
        &self,
        method: &str,
        url: &str,
        body: Option<String>,
        headers: Vec<(String, String)>,
    ) -> Result<HttpOutput, ActionError>;
    fn secret(&self, name: &str) -> Result<String, ActionError>;
    fn log(&self, message: &str) -> Result<(), ActionError>;
    fn sleep(&self, seconds: f64) -> Result<(), ActionError>;
    fn gate(&self, reason: &str) -> Result<(), ActionError>;
    /// `emit(key, value)`: publishes a value for the run's follow-ups (`then:` params).
    fn emit(&self, key: &str, value: Value) -> Result<(), ActionError>;
    /// Seconds left in the maintenance window; `i64::MAX` when the run has none.
    fn window_left(&self) -> i64;
    /// Checked between operations: `Some(reason)` stops the script (cancel, violation).
    fn should_stop(&self) -> Option<String>;
}

/// What the script sees besides the host functions.
#[derive(Debug, Clone)]
pub struct ScriptInput {
    /// `host`: name, address, tags, owner (absent when the runbook has no targets).
    pub host: Option<Value>,
    pub params: Value,
    pub run_id: String,
    /// When the script must be done, whatever it is doing.
    pub deadline: Instant,
}

/// Why a script ended without success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    /// Stopped from outside or by a fatal host function; the reason says which.
    #[error("{0}")]
    Stopped(String),
    /// A limit was hit (operations, depth, size, wall clock).
    #[error("script limit: {0}")]
    Limit(String),
    /// The script failed (`fail()`, an uncaught error, a runtime error).
    #[error("{0}")]
    Failed(String),
}

fn packages() -> &'static [Shared<rhai::Module>] {
    static PACKAGES: OnceLock<Vec<Shared<rhai::Module>>> = OnceLock::new();
    PACKAGES.get_or_init(|| {
        vec![
            LanguageCorePackage::new().as_shared_module(),
            ArithmeticPackage::new().as_shared_module(),
            LogicPackage::new().as_shared_module(),
            BasicStringPackage::new().as_shared_module(),
            MoreStringPackage::new().as_shared_module(),
            BasicArrayPackage::new().as_shared_module(),
            BasicMapPackage::new().as_shared_module(),
            BasicIteratorPackage::new().as_shared_module(),
            BasicMathPackage::new().as_shared_module(),
        ]
    })
}

/// The engine with packages and limits, without host functions.
fn base_engine() -> Engine {
    let mut engine = Engine::new_raw();
    for p in packages() {
        engine.register_global_module(p.clone());
    }
    engine.set_max_operations(limits::MAX_OPERATIONS);
    engine.set_max_call_levels(limits::MAX_CALL_LEVELS);
    engine.set_max_expr_depths(limits::MAX_EXPR_DEPTH.0, limits::MAX_EXPR_DEPTH.1);
    engine.set_max_string_size(limits::MAX_STRING_SIZE);
    engine.set_max_array_size(limits::MAX_ARRAY_SIZE);
    engine.set_max_map_size(limits::MAX_MAP_SIZE);
    engine.set_max_variables(limits::MAX_VARIABLES);
    engine.set_max_functions(limits::MAX_FUNCTIONS);
    engine.disable_symbol("eval");
    engine
}

/// Compiles a script once; the AST is shared by every host of a run.
pub fn compile(script: &str) -> Result<AST, String> {
    base_engine().compile(script).map_err(|e| e.to_string())
}

/// Runs a compiled script for one host, blocking the calling thread; call it from
/// `spawn_blocking`.
pub fn run(ast: &AST, api: Arc<dyn HostApi>, input: ScriptInput) -> Result<(), ScriptError> {
    let mut engine = base_engine();
    register_host_functions(&mut engine, api.clone());
    let deadline = input.deadline;
    let stop_api = api.clone();
    engine.on_progress(move |ops| {
        // Checking the clock every operation is measurable; every 256 is plenty.
        if ops % 256 != 0 {
            return None;
        }
        if Instant::now() >= deadline {
            return Some(Dynamic::from("wall-clock limit reached (runbook timeout)"));
        }
        stop_api.should_stop().map(Dynamic::from)
    });
    let mut scope = Scope::new();
    if let Some(h) = &input.host {
        scope.push_constant("host", json_to_dynamic(h));
    }
    scope.push_constant("params", json_to_dynamic(&input.params));
    scope.push_constant("run_id", input.run_id.clone());
    match engine.run_ast_with_scope(&mut scope, ast) {
        Ok(()) => Ok(()),
        Err(e) => Err(classify(*e)),
    }
}

fn classify(e: EvalAltResult) -> ScriptError {
    match e {
        EvalAltResult::ErrorTerminated(reason, pos) => {
            let reason = reason.into_string().unwrap_or_else(|_| "stopped".into());
            if pos.is_none() {
                ScriptError::Stopped(reason)
            } else {
                ScriptError::Stopped(format!("{reason} ({pos})"))
            }
        }
        EvalAltResult::ErrorTooManyOperations(pos) => ScriptError::Limit(format!(
            "more than {} operations ({pos})",
            limits::MAX_OPERATIONS
        )),
        EvalAltResult::ErrorStackOverflow(pos) => ScriptError::Limit(format!(
            "call depth over {} ({pos})",
            limits::MAX_CALL_LEVELS
        )),
        EvalAltResult::ErrorDataTooLarge(what, pos) => {
            ScriptError::Limit(format!("{what} over its limit ({pos})"))
        }
        EvalAltResult::ErrorTooManyVariables(pos) => {
            ScriptError::Limit(format!("too many variables ({pos})"))
        }
        EvalAltResult::ErrorParsing(p, pos) => ScriptError::Limit(format!("{p} ({pos})")),
        EvalAltResult::ErrorInFunctionCall(name, _, inner, pos) => match classify(*inner) {
            ScriptError::Failed(m) => ScriptError::Failed(format!("in {name}() ({pos}): {m}")),
            other => other,
        },
        other => ScriptError::Failed(other.to_string()),
    }
}

fn to_rhai(e: ActionError) -> Box<EvalAltResult> {
    match e {
        ActionError::Fatal(m) => {
            EvalAltResult::ErrorTerminated(Dynamic::from(m), Position::NONE).into()
        }
        ActionError::Failed(m) => {
            EvalAltResult::ErrorRuntime(Dynamic::from(m), Position::NONE).into()
        }
    }
}

type Rr<T> = Result<T, Box<EvalAltResult>>;

fn register_host_functions(engine: &mut Engine, api: Arc<dyn HostApi>) {
    let a = api.clone();
    engine.register_fn("sh", move |cmd: &str| -> Rr<Map> {
        let out = a.sh(cmd).map_err(to_rhai)?;
        let mut m = Map::new();
        m.insert("code".into(), Dynamic::from(out.code));
        m.insert("stdout".into(), Dynamic::from(out.stdout));
        m.insert("stderr".into(), Dynamic::from(out.stderr));
        m.insert("truncated".into(), Dynamic::from(out.truncated));
        Ok(m)
    });
    let a = api.clone();
    engine.register_fn("sh_ok", move |cmd: &str| -> Rr<String> {
        let out = a.sh(cmd).map_err(to_rhai)?;
        if out.code == 0 {
            Ok(out.stdout)
        } else {
            let stderr = out.stderr.trim();
            Err(to_rhai(ActionError::Failed(format!(
                "`{cmd}` exited {}{}",
                out.code,
                if stderr.is_empty() {
                    String::new()
                } else {
                    format!(": {stderr}")
                }
            ))))
        }
    });
    engine.register_fn("quote", |s: &str| -> Rr<String> {
        crate::policy::command::quote_word(s).map_err(|_| {
            to_rhai(ActionError::Failed(
                "quote(): the string contains a NUL byte".into(),
            ))
        })
    });
    let a = api.clone();
    engine.register_fn("http", move |method: &str, url: &str| -> Rr<Map> {
        http_call(&*a, method, url, Dynamic::UNIT, Map::new())
    });
    let a = api.clone();
    engine.register_fn(
        "http",
        move |method: &str, url: &str, body: Dynamic| -> Rr<Map> {
            http_call(&*a, method, url, body, Map::new())
        },
    );
    let a = api.clone();
    engine.register_fn(
        "http",
        move |method: &str, url: &str, body: Dynamic, headers: Map| -> Rr<Map> {
            http_call(&*a, method, url, body, headers)
        },
    );
    let a = api.clone();
    engine.register_fn("secret", move |name: &str| -> Rr<String> {
        a.secret(name).map_err(to_rhai)
    });
    let a = api.clone();
    engine.register_fn("log", move |msg: Dynamic| -> Rr<()> {
        let text = msg
            .into_immutable_string()
            .map(|s| s.to_string())
            .unwrap_or_else(|d| d.to_string());
        a.log(&text).map_err(to_rhai)
    });
    engine.register_fn("fail", |msg: &str| -> Rr<()> {
        Err(to_rhai(ActionError::Fatal(format!("fail: {msg}"))))
    });
    let a = api.clone();
    engine.register_fn("sleep", move |secs: i64| -> Rr<()> {
        a.sleep(secs as f64).map_err(to_rhai)
    });
    let a = api.clone();
    engine.register_fn("sleep", move |secs: f64| -> Rr<()> {
        a.sleep(secs).map_err(to_rhai)
    });
    let a = api.clone();
    engine.register_fn("gate", move |reason: &str| -> Rr<()> {
        a.gate(reason).map_err(to_rhai)
    });
    let a = api.clone();
    engine.register_fn("emit", move |key: &str, value: Dynamic| -> Rr<()> {
        a.emit(key, dynamic_to_json(&value)).map_err(to_rhai)
    });
    let a = api;
    engine.register_fn("window_left", move || -> i64 { a.window_left() });
    // Anything printed goes to the run log like `log()`.
    engine.on_print(|_| {});
}

fn http_call(api: &dyn HostApi, method: &str, url: &str, body: Dynamic, headers: Map) -> Rr<Map> {
    let body = if body.is_unit() {
        None
    } else if body.is_string() {
        Some(
            body.into_immutable_string()
                .map(|s| s.to_string())
                .unwrap_or_default(),
        )
    } else {
        Some(dynamic_to_json(&body).to_string())
    };
    let headers = headers
        .into_iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                v.into_immutable_string()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|d| d.to_string()),
            )
        })
        .collect();
    let out = api.http(method, url, body, headers).map_err(to_rhai)?;
    let mut m = Map::new();
    m.insert("status".into(), Dynamic::from(out.status));
    m.insert("body".into(), Dynamic::from(out.body));
    Ok(m)
}

/// JSON → rhai value (params, host).
pub fn json_to_dynamic(v: &Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Dynamic::from(i),
            None => Dynamic::from(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => Dynamic::from(ImmutableString::from(s.as_str())),
        Value::Array(a) => Dynamic::from_array(a.iter().map(json_to_dynamic).collect()),
        Value::Object(o) => {
            let mut m = Map::new();
            for (k, x) in o {
                m.insert(k.as_str().into(), json_to_dynamic(x));
            }
            Dynamic::from_map(m)
        }
    }
}

/// rhai value → JSON (request bodies).
pub fn dynamic_to_json(d: &Dynamic) -> Value {
    if d.is_unit() {
        Value::Null
    } else if let Ok(b) = d.as_bool() {
        Value::Bool(b)
    } else if let Ok(i) = d.as_int() {
        Value::from(i)
    } else if let Ok(f) = d.as_float() {
        Value::from(f)
    } else if d.is_string() {
        Value::String(
            d.clone()
                .into_immutable_string()
                .map(|s| s.to_string())
                .unwrap_or_default(),
        )
    } else if d.is_array() {
        Value::Array(
            d.clone()
                .into_array()
                .unwrap_or_default()
                .iter()
                .map(dynamic_to_json)
                .collect(),
        )
    } else if d.is_map() {
        let m = d.clone().cast::<Map>();
        Value::Object(
            m.iter()
                .map(|(k, v)| (k.to_string(), dynamic_to_json(v)))
                .collect(),
        )
    } else {
        Value::String(d.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    #[derive(Default)]
    struct Recorder {
        logs: Mutex<Vec<String>>,
    }

    impl HostApi for Recorder {
        fn sh(&self, command: &str) -> Result<ShOutput, ActionError> {
            if command.starts_with("forbidden") {
                return Err(ActionError::Fatal("scope_violation: not allowed".into()));
            }
            Ok(ShOutput {
                code: 0,
                stdout: format!("ran {command}"),
                stderr: String::new(),
                truncated: false,
            })
        }
        fn http(
            &self,
            _: &str,
            _: &str,
            _: Option<String>,
            _: Vec<(String, String)>,
        ) -> Result<HttpOutput, ActionError> {
            Err(ActionError::Failed("no http here".into()))
        }
        fn secret(&self, _: &str) -> Result<String, ActionError> {
            Ok("s3cret".into())
        }
        fn log(&self, m: &str) -> Result<(), ActionError> {
            self.logs.lock().unwrap().push(m.to_string());
            Ok(())
        }
        fn sleep(&self, _: f64) -> Result<(), ActionError> {
            Ok(())
        }
        fn gate(&self, _: &str) -> Result<(), ActionError> {
            Ok(())
        }
        fn emit(&self, k: &str, v: Value) -> Result<(), ActionError> {
            self.logs.lock().unwrap().push(format!("emit {k}={v}"));
            Ok(())
        }
        fn window_left(&self) -> i64 {
            i64::MAX
        }
        fn should_stop(&self) -> Option<String> {
            None
        }
    }

    fn exec(script: &str, wall: Duration) -> (Result<(), ScriptError>, Vec<String>) {
        let ast = compile(script).expect("compiles");
        let rec = Arc::new(Recorder::default());
        let input = ScriptInput {
            host: Some(serde_json::json!({"name": "web1", "tags": ["web"]})),
            params: serde_json::json!({"n": 3}),
            run_id: "r1".into(),
            deadline: Instant::now() + wall,
        };
        let r = run(&ast, rec.clone(), input);
        let logs = rec.logs.lock().unwrap().clone();
        (r, logs)
    }

    #[test]
    fn host_functions_and_inputs() {
        let (r, logs) = exec(
            r#"let o = sh("uptime"); log(`${host.name} ${params.n} ${o.stdout} ${run_id}`); log(quote("a b'c"));"#,
            Duration::from_secs(5),
        );
        assert_eq!(r, Ok(()));
        assert_eq!(
            logs,
            vec!["web1 3 ran uptime r1".to_string(), r#""a b'c""#.to_string()]
        );
    }

    #[test]
    fn fatal_errors_cannot_be_caught() {
        let (r, logs) = exec(
            r#"try { sh("forbidden thing"); } catch (e) { log("caught"); } log("after");"#,
            Duration::from_secs(5),
        );
        assert!(
            matches!(r, Err(ScriptError::Stopped(ref m)) if m.contains("scope_violation")),
            "{r:?}"
        );
        assert!(logs.is_empty(), "{logs:?}");
        let (r, _) = exec(
            r#"fn f() { fail("boom") } try { f() } catch { log("caught") }"#,
            Duration::from_secs(5),
        );
        assert!(
            matches!(r, Err(ScriptError::Stopped(ref m)) if m.contains("boom")),
            "{r:?}"
        );
    }

    #[test]
    fn hostile_scripts_hit_their_limits() {
        let cases = [
            ("loop {}", "operations"),
            ("fn f(x) { f(x + 1) } f(0);", "call depth"),
            (r#"let s = "xx"; loop { s += s; }"#, "over its limit"),
            ("let a = []; loop { a.push(1); }", "over its limit"),
        ];
        for (script, want) in cases {
            let (r, _) = exec(script, Duration::from_secs(60));
            let msg = r.expect_err(script).to_string();
            assert!(msg.contains(want), "{script}: {msg}");
        }
    }

    #[test]
    fn wall_clock_deadline_stops_a_script() {
        let started = Instant::now();
        let (r, _) = exec(
            "let i = 0; loop { i += 1; if i > 1000000000 { break; } }",
            Duration::from_millis(200),
        );
        assert!(
            matches!(r, Err(ScriptError::Stopped(ref m)) if m.contains("wall-clock")),
            "{r:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn eval_and_import_are_unavailable() {
        assert!(compile(r#"eval("1 + 1")"#).is_err());
        assert!(compile(r#"import "x" as y;"#).is_err());
    }
}
