//! The CEL environment of a ValidatingAdmissionPolicy: the variables (`object`, `oldObject`,
//! `request`, `params`, `namespaceObject`), kube's Kubernetes CEL functions, and the
//! `authorizer` variable, which asks the RBAC authorizer about the requester:
//! `authorizer.group(g).resource(r).subresource(s).namespace(ns).name(n).check(verb)` gives a
//! decision with `allowed()`, `reason()` and `errored()`, as on the real server
//! (`path(...)` and `serviceAccount(...)` are not implemented: they evaluate to an error, which
//! fails closed).
//!
//! CEL functions must be `'static`, and the store is only borrowed while a request is admitted,
//! so an expression is evaluated in rounds: a `check` whose answer is not known yet records
//! its question and answers "not allowed"; the questions are then answered from the store and
//! the expression is evaluated again, until it asks nothing new. Expressions are pure, so the
//! last round sees every answer it asks for.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use kube::core::cel::{
    cel::{
        extractors::This,
        objects::{Key, Map},
        Context, ExecutionError, Program, Value as Cel,
    },
    KubeCelExt,
};
use serde_json::Value;

use super::rbac::{self, Attributes, UserInfo};
use super::store::State;

/// Rounds of evaluation at most; each round answers every question of the previous one.
const MAX_ROUNDS: usize = 8;
/// Marks a map as an authorizer (builder) value, and as a decision.
const AUTHORIZER: &str = "__authorizer";
const DECISION: &str = "__decision";

/// One question to the authorizer: verb, group, resource, subresource, namespace, name.
type Question = (String, String, String, String, String, String);

#[derive(Default)]
struct Answers {
    known: HashMap<Question, bool>,
    asked: Vec<Question>,
}

/// Evaluates expressions for one admission request.
pub struct Evaluation<'a> {
    pub state: &'a State,
    pub user: &'a UserInfo,
    /// The variables, by name, as one JSON object.
    pub variables: &'a Value,
}

impl Evaluation<'_> {
    /// Each expression's result: `Ok(bool)`, or why it could not be evaluated.
    pub fn run(&self, expressions: &[&str]) -> Vec<Result<bool, String>> {
        expressions
            .iter()
            .map(|expression| match self.value(expression)? {
                Cel::Bool(result) => Ok(result),
                other => Err(format!("expression returned non-boolean: {other:?}")),
            })
            .collect()
    }

    /// A `messageExpression`'s text, if it evaluates to a string.
    pub fn message(&self, expression: &str) -> Option<String> {
        match self.value(expression) {
            Ok(Cel::String(text)) => Some(text.to_string()),
            _ => None,
        }
    }

    fn value(&self, expression: &str) -> Result<Cel, String> {
        let program = Program::compile(expression).map_err(|e| format!("compilation error: {e}"))?;
        let answers = Arc::new(Mutex::new(Answers::default()));
        for _ in 0..MAX_ROUNDS {
            let context = self.context(answers.clone())?;
            let result = program.execute(&context).map_err(|e| format!("evaluation error: {e}"));
            let asked = answers.lock().map(|mut a| std::mem::take(&mut a.asked)).unwrap_or_default();
            if asked.is_empty() {
                return result;
            }
            let mut answers = answers.lock().map_err(|_| "authorizer state poisoned".to_string())?;
            for question in asked {
                let (verb, group, resource, subresource, namespace, name) = &question;
                let combined = if subresource.is_empty() { resource.clone() } else { format!("{resource}/{subresource}") };
                let allowed =
                    rbac::authorize(self.state, self.user, &Attributes::resource(verb, group, &combined, namespace, name)).is_ok();
                answers.known.insert(question, allowed);
            }
        }
        Err("the authorizer was asked too many questions".into())
    }

    fn context(&self, answers: Arc<Mutex<Answers>>) -> Result<Context<'static>, String> {
        let mut context = Context::default();
        context.register_all();
        for (name, value) in self.variables.as_object().into_iter().flatten() {
            let value = kube::core::cel::cel::to_value(value).map_err(|e| format!("variable {name}: {e}"))?;
            context.add_variable_from_value(name.clone(), value);
        }
        context.add_variable_from_value("authorizer", map(&[(AUTHORIZER, Cel::Bool(true))]));
        for field in ["group", "resource", "subresource", "namespace", "name"] {
            context.add_function(field, move |This(this): This<Cel>, value: Arc<String>| with(this, field, &value));
        }
        context.add_function("check", move |This(this): This<Cel>, verb: Arc<String>| -> Result<Cel, ExecutionError> {
            let field = |key: &str| text(&this, key);
            if !matches!(get(&this, AUTHORIZER), Some(Cel::Bool(true))) {
                return Err(ExecutionError::function_error("check", "check() is called on an authorizer"));
            }
            let question: Question = (
                verb.to_string(),
                field("group").unwrap_or_default(),
                field("resource").unwrap_or_default(),
                field("subresource").unwrap_or_default(),
                field("namespace").unwrap_or_default(),
                field("name").unwrap_or_default(),
            );
            let mut answers = answers.lock().map_err(|_| ExecutionError::function_error("check", "authorizer state poisoned"))?;
            let allowed = match answers.known.get(&question) {
                Some(allowed) => *allowed,
                None => {
                    answers.asked.push(question);
                    false
                }
            };
            Ok(map(&[(DECISION, Cel::Bool(true)), ("allowed", Cel::Bool(allowed)), ("reason", Cel::String(Arc::new(String::new())))]))
        });
        for (function, key) in [("allowed", "allowed"), ("reason", "reason")] {
            context.add_function(function, move |This(this): This<Cel>| -> Result<Cel, ExecutionError> {
                if !matches!(get(&this, DECISION), Some(Cel::Bool(true))) {
                    return Err(ExecutionError::function_error(function, "called on something that is not an authorizer decision"));
                }
                Ok(get(&this, key).cloned().unwrap_or(Cel::Null))
            });
        }
        context.add_function("errored", |This(_this): This<Cel>| false);
        Ok(context)
    }
}

fn map(entries: &[(&str, Cel)]) -> Cel {
    let map: HashMap<Key, Cel> = entries.iter().map(|(k, v)| (Key::String(Arc::new(k.to_string())), v.clone())).collect();
    Cel::Map(Map { map: Arc::new(map) })
}

fn get<'a>(value: &'a Cel, key: &str) -> Option<&'a Cel> {
    match value {
        Cel::Map(map) => map.map.get(&Key::String(Arc::new(key.to_string()))),
        _ => None,
    }
}

fn text(value: &Cel, key: &str) -> Option<String> {
    match get(value, key) {
        Some(Cel::String(text)) => Some(text.to_string()),
        _ => None,
    }
}

/// The authorizer `this` narrowed by one more attribute.
fn with(this: Cel, key: &str, value: &str) -> Result<Cel, ExecutionError> {
    match this {
        Cel::Map(map) if map.map.contains_key(&Key::String(Arc::new(AUTHORIZER.to_string()))) => {
            let mut entries = (*map.map).clone();
            entries.insert(Key::String(Arc::new(key.to_string())), Cel::String(Arc::new(value.to_string())));
            Ok(Cel::Map(Map { map: Arc::new(entries) }))
        }
        _ => Err(ExecutionError::function_error(key, "called on something that is not an authorizer")),
    }
}
