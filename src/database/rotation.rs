//! On-demand rotation of an environment's database password (pure part): the request on the
//! Tenant, the record on the credentials Secret, and what a reconcile does next.
//!
//! A request is the Tenant annotation `tenancy.platform.dev/rotate-credentials.<env>` whose
//! value is a token chosen by the client (the plugin writes the time, RFC 3339). A token is
//! done once: the credentials Secret records the token of the rotation that put its password
//! there ([`ANNOTATION_ROTATION`]), so a lost status or a restart never rotates twice, and a
//! new token rotates again.
//!
//! Order of the writes (external provider), so that a restart anywhere loses nothing:
//!
//! 1. the new password is written into the Secret under [`PENDING_PASSWORD_KEY`], with the
//!    token in [`ANNOTATION_ROTATION_PENDING`]; applications still read the old `password`;
//! 2. the server's role gets the new password (`ALTER ROLE … PASSWORD` with a SCRAM
//!    verifier computed by the operator); the new one is checked to log in and the old one
//!    to fail;
//! 3. the Secret gets the new `password` (and URIs), the token in [`ANNOTATION_ROTATION`] and
//!    the time in [`ANNOTATION_ROTATED_AT`]; the pending key goes.
//!
//! A restart after 1 or 2 finds the pending password and carries on from 2 with it (setting
//! the same password twice is harmless); ordinary reconciles carry the pending key and the
//! annotations forward and never replace `password`. CloudNativePG reconciles the role's
//! password from the Secret itself, so there the rotation is one write (step 3), confirmed
//! when the `Cluster` reports the Secret's version applied.

use std::collections::BTreeMap;

use crate::types::{DatabaseProvider, Environment};

/// Prefix of the Tenant annotation that requests a rotation; the environment follows.
pub const REQUEST_PREFIX: &str = "tenancy.platform.dev/rotate-credentials.";
/// On the credentials Secret: the token of the rotation that put its password there.
pub const ANNOTATION_ROTATION: &str = "tenancy.platform.dev/credentials-rotation";
/// On the credentials Secret: when that rotation completed (RFC 3339).
pub const ANNOTATION_ROTATED_AT: &str = "tenancy.platform.dev/credentials-rotated-at";
/// On the credentials Secret: the token of a rotation between steps 1 and 3.
pub const ANNOTATION_ROTATION_PENDING: &str = "tenancy.platform.dev/credentials-rotation-pending";
/// Secret data key of the new password between steps 1 and 3.
pub const PENDING_PASSWORD_KEY: &str = "pending-password";
/// The Secret annotations a rotation writes and ordinary reconciles carry forward.
pub const SECRET_ANNOTATIONS: [&str; 3] = [ANNOTATION_ROTATION, ANNOTATION_ROTATED_AT, ANNOTATION_ROTATION_PENDING];
/// Longest token accepted (an annotation value may be much longer; a token is a time or a
/// short id).
pub const MAX_TOKEN_LEN: usize = 128;

/// The Tenant annotation that requests a rotation of `env`'s password.
pub fn request_annotation(env: Environment) -> String {
    format!("{REQUEST_PREFIX}{env}")
}

/// The token a Tenant's annotations request for `env`, if any; an empty or malformed value
/// is [`Requested::Invalid`].
pub fn requested(annotations: &BTreeMap<String, String>, env: Environment) -> Option<Requested> {
    let token = annotations.get(&request_annotation(env))?.trim();
    let well_formed = !token.is_empty() && token.len() <= MAX_TOKEN_LEN && token.chars().all(|c| c.is_ascii_graphic());
    Some(if well_formed { Requested::Token(token.to_string()) } else { Requested::Invalid })
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requested {
    Token(String),
    Invalid,
}

/// What a credentials Secret records of rotations, from its annotations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretRecord {
    /// The token of the rotation that put the current password there.
    pub done: Option<String>,
    pub rotated_at: Option<String>,
    /// A rotation between steps 1 and 3 (see the module).
    pub pending: Option<String>,
}

impl SecretRecord {
    pub fn read<'a>(annotation: impl Fn(&str) -> Option<&'a str>) -> Self {
        let get = |key: &str| annotation(key).filter(|v| !v.is_empty()).map(str::to_string);
        SecretRecord { done: get(ANNOTATION_ROTATION), rotated_at: get(ANNOTATION_ROTATED_AT), pending: get(ANNOTATION_ROTATION_PENDING) }
    }

    /// The annotations that keep this record on the Secret.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        [(ANNOTATION_ROTATION, &self.done), (ANNOTATION_ROTATED_AT, &self.rotated_at), (ANNOTATION_ROTATION_PENDING, &self.pending)]
            .into_iter()
            .filter_map(|(key, value)| Some((key.to_string(), value.clone()?)))
            .collect()
    }
}

/// What a reconcile does about rotation in one environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing requested, or the request is done.
    Nothing,
    /// Finish the rotation the Secret has pending (from step 2), with its own token.
    Resume(String),
    /// Start a rotation for this token.
    Start(String),
    /// The provider cannot rotate safely: say why, change nothing.
    Refuse(String),
    /// The request's value cannot be a token.
    Malformed,
}

/// The next step from the request and the Secret's record.
pub fn next_step(provider: DatabaseProvider, requested: Option<&Requested>, record: &SecretRecord) -> Step {
    if let Some(pending) = &record.pending {
        return Step::Resume(pending.clone());
    }
    let token = match requested {
        None => return Step::Nothing,
        Some(Requested::Invalid) => return Step::Malformed,
        Some(Requested::Token(token)) => token,
    };
    if record.done.as_deref() == Some(token.as_str()) {
        return Step::Nothing;
    }
    match provider {
        DatabaseProvider::External | DatabaseProvider::CloudnativePg => Step::Start(token.clone()),
        DatabaseProvider::Statefulset => Step::Refuse(format!(
            "rotation request {token} refused: the statefulset provider's PostgreSQL runs inside the tenant's namespace, \
             which the operator does not reach (its NetworkPolicy admits only the tenant's own namespaces); changing the \
             Secret alone would lock the applications out. Change the password with ALTER ROLE inside the database pod, then \
             the Secret's password, or use the external or cloudnative-pg provider"
        )),
        DatabaseProvider::None => Step::Nothing,
    }
}

/// The status message of a request that waits because the Tenant is not reconciled now.
pub fn waiting_message(token: &str, why: &str) -> String {
    format!("rotation request {token} waits: {why}")
}

/// The message for a request value that is not a token.
pub fn malformed_message(env: Environment) -> String {
    format!(
        "annotation {} is not a rotation request: use a token of 1 to {MAX_TOKEN_LEN} visible ASCII characters, e.g. the time \
         in RFC 3339",
        request_annotation(env)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn token(t: &str) -> Requested {
        Requested::Token(t.into())
    }

    #[test]
    fn requests_are_read_per_environment() {
        let a = annotations(&[("tenancy.platform.dev/rotate-credentials.dev", "2026-12-06T08:00:00Z"), ("other", "x")]);
        assert_eq!(requested(&a, Environment::Dev), Some(token("2026-12-06T08:00:00Z")));
        assert_eq!(requested(&a, Environment::Prod), None);
        for bad in ["", "  ", "two words", &"x".repeat(MAX_TOKEN_LEN + 1), "tab\there"] {
            let a = annotations(&[("tenancy.platform.dev/rotate-credentials.dev", bad)]);
            assert_eq!(requested(&a, Environment::Dev), Some(Requested::Invalid), "{bad:?}");
        }
    }

    #[test]
    fn a_token_is_rotated_once_and_a_pending_rotation_is_finished_first() {
        let none = SecretRecord::default();
        let t1 = token("t1");
        assert_eq!(next_step(DatabaseProvider::External, None, &none), Step::Nothing);
        assert_eq!(next_step(DatabaseProvider::External, Some(&t1), &none), Step::Start("t1".into()));
        let done = SecretRecord { done: Some("t1".into()), ..SecretRecord::default() };
        assert_eq!(next_step(DatabaseProvider::External, Some(&t1), &done), Step::Nothing, "once per token");
        assert_eq!(next_step(DatabaseProvider::CloudnativePg, Some(&token("t2")), &done), Step::Start("t2".into()));
        let pending = SecretRecord { pending: Some("t1".into()), ..SecretRecord::default() };
        assert_eq!(next_step(DatabaseProvider::External, Some(&token("t2")), &pending), Step::Resume("t1".into()));
        assert_eq!(next_step(DatabaseProvider::External, None, &pending), Step::Resume("t1".into()), "even if withdrawn");
        assert_eq!(next_step(DatabaseProvider::External, Some(&Requested::Invalid), &none), Step::Malformed);
    }

    #[test]
    fn the_statefulset_provider_refuses_rather_than_desynchronise() {
        let Step::Refuse(message) = next_step(DatabaseProvider::Statefulset, Some(&token("t1")), &SecretRecord::default()) else {
            panic!("refused")
        };
        assert!(message.contains("t1") && message.contains("NetworkPolicy"), "{message}");
    }

    #[test]
    fn the_record_round_trips_through_annotations() {
        let record = SecretRecord { done: Some("t1".into()), rotated_at: Some("2026-12-06T08:00:01Z".into()), pending: None };
        let kept = record.annotations();
        assert_eq!(kept.len(), 2);
        assert_eq!(SecretRecord::read(|key| kept.get(key).map(String::as_str)), record);
    }
}
