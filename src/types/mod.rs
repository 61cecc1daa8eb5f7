//! The custom resources of `tenancy.platform.dev/v1alpha1` (SPEC §2) and their status types.

mod conditions;
mod tenant;
mod user;

pub use conditions::{condition, set_condition, Conditions};
pub use tenant::*;
pub use user::*;

/// API group of both custom resources.
pub const GROUP: &str = "tenancy.platform.dev";
/// API version of both custom resources.
pub const VERSION: &str = "v1alpha1";
