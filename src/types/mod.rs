//! The custom resources of `tenancy.platform.dev/v1alpha1` (SPEC §2) and their status types.

mod conditions;
mod reason;
mod tenant;
mod user;

pub use conditions::{set_condition, Conditions};
pub use reason::{condition, ConditionType, Problem, Reason};
pub use tenant::*;
pub use user::*;
