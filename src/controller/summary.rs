//! `Ready`, `Reconciling` and `Stalled` (kstatus) set together for both kinds, so they never
//! disagree: exactly one is True, none while suspended.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::types::{condition, set_condition, ConditionType, Problem, Reason};

/// Where a resource stands after a reconcile.
pub enum Summary<'a> {
    /// Everything works (the message says what).
    Ready(&'a str),
    /// Work is in progress; the problem says what is awaited.
    Progressing(&'a Problem),
    /// A person must change something.
    Stalled(&'a Problem),
    Suspended(&'a str),
    Terminating(&'a str),
}

impl Summary<'_> {
    pub fn apply(&self, conditions: &mut Vec<Condition>, generation: Option<i64>, now: &Time) {
        let c = |type_, value, reason, message: &str| condition(type_, value, reason, message, generation, now);
        let [ready, reconciling, stalled] = match self {
            Summary::Ready(message) => [
                c(ConditionType::Ready, true, Reason::Ready, message),
                c(ConditionType::Reconciling, false, Reason::Ready, "nothing left to do"),
                c(ConditionType::Stalled, false, Reason::Ready, "nothing is blocked"),
            ],
            Summary::Progressing(problem) => [
                c(ConditionType::Ready, false, problem.reason, &problem.message),
                c(ConditionType::Reconciling, true, problem.reason, &problem.message),
                c(ConditionType::Stalled, false, Reason::Provisioning, "nothing is blocked"),
            ],
            Summary::Stalled(problem) => [
                c(ConditionType::Ready, false, problem.reason, &problem.message),
                c(ConditionType::Reconciling, false, problem.reason, "waiting for a change by a person"),
                c(ConditionType::Stalled, true, problem.reason, &problem.message),
            ],
            Summary::Suspended(message) => [
                c(ConditionType::Ready, false, Reason::Suspended, message),
                c(ConditionType::Reconciling, false, Reason::Suspended, "suspended"),
                c(ConditionType::Stalled, false, Reason::Suspended, "suspended"),
            ],
            Summary::Terminating(message) => [
                c(ConditionType::Ready, false, Reason::Terminating, message),
                c(ConditionType::Reconciling, true, Reason::Terminating, message),
                c(ConditionType::Stalled, false, Reason::Terminating, "nothing is blocked"),
            ],
        };
        for condition in [ready, reconciling, stalled] {
            set_condition(conditions, condition);
        }
    }

    /// The summary of one problem: stalled when it needs a person, progressing otherwise.
    pub fn of(problem: &Problem) -> Summary<'_> {
        if problem.reason.needs_a_person() {
            Summary::Stalled(problem)
        } else {
            Summary::Progressing(problem)
        }
    }
}
