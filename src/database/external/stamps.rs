//! The ownership stamp (SPEC §8 rule 5): the comment this provider writes on every database
//! and role it creates, and the decision what it may do with an object it finds.
//!
//! A stamp is a comment of `; `-separated `key=value` fields in a fixed order:
//!
//! ```text
//! tenancy.platform.dev/tenant=acme; tenancy.platform.dev/tenant-uid=0f4c…
//! tenancy.platform.dev/tenant=acme; tenancy.platform.dev/tenant-uid=0f4c…; tenancy.platform.dev/retained=true; tenancy.platform.dev/retained-at=2025-01-31T12:00:00Z
//! ```
//!
//! Neither a slug (DNS label) nor a UID (`[A-Za-z0-9-]`) can contain `;`, `=` or a space, so
//! every field parses one way only; anything else, including a stamp with an unknown or
//! repeated field, reads as unstamped: never ours without proof.

use std::fmt;

use jiff::Timestamp;

use super::names::{check_slug, quote_literal};
use super::{ExternalDbError, ExternalNames};

const KEY_TENANT: &str = "tenancy.platform.dev/tenant";
const KEY_TENANT_UID: &str = "tenancy.platform.dev/tenant-uid";
const KEY_RETAINED: &str = "tenancy.platform.dev/retained";
const KEY_RETAINED_AT: &str = "tenancy.platform.dev/retained-at";
const SEPARATOR: &str = "; ";
/// Kubernetes UIDs are 36-character UUIDs; the bound only keeps messages short.
const MAX_UID_LEN: usize = 128;

/// Prefix of the database comment with which the first operator version, which stamped
/// nothing, marked a database kept after its Tenant was deleted with `deletionPolicy: Retain`.
pub const LEGACY_RETAINED_MARK: &str = "tenancy.platform.dev/retained=true";

/// Who the caller is: the Tenant whose databases and roles these are, and the earlier Tenant
/// of its slug whose objects it consents to adopt (`spec.adoptRetainedFrom`), if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    slug: String,
    tenant_uid: String,
    adopt_from: Option<String>,
}

impl Stamp {
    /// `slug` is the Tenant's name, `tenant_uid` its `metadata.uid`.
    pub fn new(slug: &str, tenant_uid: &str) -> Result<Self, ExternalDbError> {
        check_slug(slug)?;
        if !is_uid(tenant_uid) {
            return Err(ExternalDbError::InvalidName(format!(
                "tenant UID {tenant_uid:?} is not 1 to {MAX_UID_LEN} letters, digits and '-'"
            )));
        }
        Ok(Self { slug: slug.to_owned(), tenant_uid: tenant_uid.to_owned(), adopt_from: None })
    }

    /// The same Tenant, consenting to adopt what the earlier Tenant `from` of its slug stamped.
    pub fn adopting(self, from: Option<&str>) -> Self {
        Self { adopt_from: from.map(str::to_owned), ..self }
    }

    /// Whether objects stamped for this slug by the Tenant `uid` may become this Tenant's.
    fn may_take_over(&self, uid: &str) -> bool {
        uid == self.tenant_uid || self.adopt_from.as_deref() == Some(uid)
    }

    pub fn slug(&self) -> &str {
        &self.slug
    }

    pub fn tenant_uid(&self) -> &str {
        &self.tenant_uid
    }

    /// The comment of an object this Tenant uses.
    pub fn record(&self) -> StampRecord {
        StampRecord { slug: self.slug.clone(), tenant_uid: self.tenant_uid.clone(), retained: false, retained_at: None }
    }

    /// The comment of an object kept after this Tenant let go of it.
    pub fn retained_record(&self, at: Timestamp) -> StampRecord {
        StampRecord { retained: true, retained_at: Some(at), ..self.record() }
    }
}

fn is_uid(value: &str) -> bool {
    !value.is_empty() && value.len() <= MAX_UID_LEN && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A parsed stamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StampRecord {
    pub slug: String,
    pub tenant_uid: String,
    pub retained: bool,
    /// Only with `retained`; optional so that a person can mark an object by hand.
    pub retained_at: Option<Timestamp>,
}

impl StampRecord {
    pub fn parse(comment: &str) -> Option<Self> {
        let mut fields = comment.split(SEPARATOR).map(|field| field.split_once('='));
        let slug = match fields.next()? {
            Some((KEY_TENANT, slug)) if check_slug(slug).is_ok() => slug.to_owned(),
            _ => return None,
        };
        let tenant_uid = match fields.next()? {
            Some((KEY_TENANT_UID, uid)) if is_uid(uid) => uid.to_owned(),
            _ => return None,
        };
        let retained = match fields.next() {
            None => false,
            Some(Some((KEY_RETAINED, "true"))) => true,
            Some(_) => return None,
        };
        let retained_at = match fields.next() {
            None => None,
            Some(Some((KEY_RETAINED_AT, at))) if retained => Some(at.parse::<Timestamp>().ok()?),
            Some(_) => return None,
        };
        if fields.next().is_some() {
            return None;
        }
        Some(Self { slug, tenant_uid, retained, retained_at })
    }
}

impl fmt::Display for StampRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{KEY_TENANT}={}{SEPARATOR}{KEY_TENANT_UID}={}", self.slug, self.tenant_uid)?;
        if self.retained {
            write!(f, "{SEPARATOR}{KEY_RETAINED}=true")?;
            if let Some(at) = self.retained_at {
                write!(f, "{SEPARATOR}{KEY_RETAINED_AT}={at}")?;
            }
        }
        Ok(())
    }
}

/// What an existing object's comment says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mark {
    /// No comment, someone's own comment, or a malformed stamp.
    Unstamped,
    /// [`LEGACY_RETAINED_MARK`]: retained by the first operator version; still unstamped.
    LegacyRetained,
    Stamped(StampRecord),
}

impl Mark {
    pub fn read(comment: Option<&str>) -> Self {
        match comment {
            Some(text) => match StampRecord::parse(text) {
                Some(record) => Self::Stamped(record),
                None if text.starts_with(LEGACY_RETAINED_MARK) => Self::LegacyRetained,
                None => Self::Unstamped,
            },
            None => Self::Unstamped,
        }
    }

    /// Retained by any Tenant or operator version.
    pub fn is_retained(&self) -> bool {
        match self {
            Self::Unstamped => false,
            Self::LegacyRetained => true,
            Self::Stamped(record) => record.retained,
        }
    }

    /// Stamped by exactly this Tenant.
    pub fn is_by(&self, stamp: &Stamp) -> bool {
        matches!(self, Self::Stamped(record) if record.slug == stamp.slug && record.tenant_uid == stamp.tenant_uid)
    }

    /// Stamped by this Tenant and not let go of.
    pub fn is_live_by(&self, stamp: &Stamp) -> bool {
        self.is_by(stamp) && !self.is_retained()
    }

    /// Why this object is not (or no longer) the Tenant's to change, for messages.
    pub fn describe(&self, comment: Option<&str>) -> String {
        match self {
            Self::Unstamped => match comment {
                Some(text) => format!("it carries no tenant stamp (its comment is {:?})", shorten(text)),
                None => "it carries no tenant stamp".to_owned(),
            },
            Self::LegacyRetained => "it carries the retained mark of an operator version without stamps, not a tenant stamp".to_owned(),
            Self::Stamped(record) => {
                let retained = if record.retained { ", retained" } else { "" };
                format!("it is stamped for Tenant `{}` with UID {}{retained}", record.slug, record.tenant_uid)
            }
        }
    }
}

fn shorten(text: &str) -> String {
    const MAX_CHARS: usize = 80;
    if text.chars().count() <= MAX_CHARS {
        text.to_owned()
    } else {
        text.chars().take(MAX_CHARS).chain("…".chars()).collect()
    }
}

/// A database or role as found on the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Database,
    Role,
}

impl Kind {
    pub fn sql(self) -> &'static str {
        match self {
            Self::Database => "DATABASE",
            Self::Role => "ROLE",
        }
    }
}

/// One existing object and its comment.
#[derive(Clone, Debug)]
pub(super) struct Found<'a> {
    pub kind: Kind,
    pub name: &'a str,
    pub comment: Option<&'a str>,
}

impl Found<'_> {
    pub fn mark(&self) -> Mark {
        Mark::read(self.comment)
    }

    pub fn label(&self) -> String {
        match self.kind {
            Kind::Database => format!("database `{}`", self.name),
            Kind::Role => format!("role `{}`", self.name),
        }
    }
}

/// What [`assess`] allows: the objects found may be taken on as this Tenant's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Claim {
    /// Some object is unstamped: the login role must first accept the Tenant's password.
    pub needs_proof: bool,
    /// Some object was retained (stamped by this slug, or with the legacy mark).
    pub adopted_retained: bool,
    /// The UID of the Tenant that retained the objects, when they carry a stamp.
    pub previous_tenant_uid: Option<String>,
}

/// The state of the tenant environment's objects, as read before anything is changed.
#[derive(Clone, Debug)]
pub(super) struct Inventory<'a> {
    pub database: Option<Found<'a>>,
    /// Owner of the database (`pg_database.datdba`), when it exists.
    pub database_owner: Option<&'a str>,
    pub owner_role: Option<Found<'a>>,
    pub login_role: Option<Found<'a>>,
}

impl<'a> Inventory<'a> {
    pub fn existing(&self) -> impl Iterator<Item = &Found<'a>> {
        [&self.database, &self.owner_role, &self.login_role].into_iter().flatten()
    }
}

/// Decides whether this Tenant may use what exists under its names:
/// absent or stamped by this Tenant → yes (retained: taken back); stamped by the earlier Tenant
/// of this slug it consents to adopt from → yes, adopting it; retained by another earlier
/// Tenant of this slug → [`ExternalDbError::RetainedByEarlierTenant`] (a reused slug may be
/// another customer); unstamped → only after the login role proves the Tenant's password (and
/// an unstamped database must belong to the Tenant's owner role, as the stamp-less operator
/// version left it); stamped by another Tenant → [`ExternalDbError::DatabaseConflict`].
pub(super) fn assess(stamp: &Stamp, names: &ExternalNames, server: &str, found: &Inventory<'_>) -> Result<Claim, ExternalDbError> {
    let mut claim = Claim::default();
    for object in found.existing() {
        match object.mark() {
            Mark::Stamped(record) if record.slug == stamp.slug && stamp.may_take_over(&record.tenant_uid) => {
                claim.adopted_retained |= record.retained;
                if record.tenant_uid != stamp.tenant_uid {
                    claim.previous_tenant_uid.get_or_insert(record.tenant_uid);
                }
            }
            Mark::Stamped(record) if record.slug == stamp.slug && record.retained => {
                return Err(ExternalDbError::RetainedByEarlierTenant {
                    object: format!("{} on {server}", object.label()),
                    previous_uid: record.tenant_uid,
                })
            }
            Mark::Stamped(record) => return Err(foreign_conflict(stamp, names, server, object, &record)),
            Mark::LegacyRetained | Mark::Unstamped => {
                claim.adopted_retained |= object.mark() == Mark::LegacyRetained;
                claim.needs_proof = true;
            }
        }
    }
    let unstamped = |object: &&Found<'_>| matches!(object.mark(), Mark::Unstamped | Mark::LegacyRetained);
    if let (Some(database), Some(owner)) = (found.database.as_ref().filter(unstamped), found.database_owner) {
        if owner != names.owner_role() {
            let why =
                format!("{} and is owned by role `{owner}`, not by `{}`", database.mark().describe(database.comment), names.owner_role());
            return Err(unstamped_conflict(stamp, names, server, database, why));
        }
    }
    if found.login_role.is_none() {
        if let Some(object) = found.existing().find(unstamped) {
            let why = format!(
                "{}, and there is no login role `{}` to prove it is this Tenant's",
                object.mark().describe(object.comment),
                names.login_role()
            );
            return Err(unstamped_conflict(stamp, names, server, object, why));
        }
    }
    Ok(claim)
}

/// The conflict when the login role did not accept the Tenant's password.
pub(super) fn unproven_conflict(stamp: &Stamp, names: &ExternalNames, server: &str, found: &Inventory<'_>) -> ExternalDbError {
    let object = found.existing().find(|object| matches!(object.mark(), Mark::Unstamped | Mark::LegacyRetained));
    let Some(object) = object else {
        return ExternalDbError::DatabaseConflict {
            object: format!("login role `{}` on {server}", names.login_role()),
            found: "it does not accept the password in the Tenant's credentials Secret".to_owned(),
            remedy: "Set its password to the one in the Tenant's credentials Secret.".to_owned(),
        };
    };
    let why = format!(
        "{}, and login role `{}` does not accept the password in the Tenant's credentials Secret",
        object.mark().describe(object.comment),
        names.login_role()
    );
    unstamped_conflict(stamp, names, server, object, why)
}

fn unstamped_conflict(stamp: &Stamp, names: &ExternalNames, server: &str, object: &Found<'_>, found: String) -> ExternalDbError {
    let remedy = format!(
        "If it is not this Tenant's, rename or remove it (or give the Tenant another name). If it holds this Tenant's data \
         from an operator version without ownership stamps, set the password of role `{login}` to the one in the Tenant's \
         credentials Secret, or stamp the database `{database}` and the roles `{owner}` and `{login}` by hand with: COMMENT ON \
         <DATABASE|ROLE> <name> IS {comment}",
        login = names.login_role(),
        database = names.database(),
        owner = names.owner_role(),
        comment = literal(&stamp.record()),
    );
    ExternalDbError::DatabaseConflict { object: format!("{} on {server}", object.label()), found, remedy }
}

fn foreign_conflict(stamp: &Stamp, names: &ExternalNames, server: &str, object: &Found<'_>, record: &StampRecord) -> ExternalDbError {
    let remedy = if record.slug == stamp.slug {
        format!(
            "This Tenant's UID is {}; the other Tenant `{}` may live on another cluster sharing this server. If it no longer \
             exists and this Tenant is to take its data over (database `{}` and its roles), set `spec.adoptRetainedFrom: {}` \
             on this Tenant.",
            stamp.tenant_uid,
            record.slug,
            names.database(),
            record.tenant_uid,
        )
    } else {
        format!("Two Tenants cannot share these names; rename or remove the other Tenant `{}`'s object by hand.", record.slug)
    };
    ExternalDbError::DatabaseConflict {
        object: format!("{} on {server}", object.label()),
        found: object.mark().describe(object.comment),
        remedy,
    }
}

fn literal(record: &StampRecord) -> String {
    // A stamp holds neither quotes nor NUL (checked when parsed or built).
    quote_literal(&record.to_string()).unwrap_or_else(|_| format!("'{record}'"))
}

#[cfg(test)]
mod tests;
