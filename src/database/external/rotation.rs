//! Rotating the login role's password on demand (see [`crate::database::rotation`] for the
//! order of the writes around it).

use super::connection::{authenticates, login, within_deadline};
use super::roles::{self, check_password, Verifier};
use super::session::Session;
use super::stamps::{self, Stamp};
use super::{AdminConnection, ExternalDbError, ExternalNames};

/// Sets the login role's password to `new` and proves it: `new` logs in, `old` no longer
/// does. Only objects this Tenant may claim are touched (the same assessment as
/// [`super::ensure_database`]: stamped by it, or adopted with consent, or unstamped and
/// proven by `old`); the password travels as a SCRAM verifier computed here, never in clear.
/// Setting the same `new` twice is harmless, so a rotation interrupted after this call is
/// finished by calling it again. Without a login role yet (its database was never created)
/// there is nothing to change: the role is created later with the Secret's new password.
pub async fn rotate_password(
    admin: &AdminConnection,
    names: &ExternalNames,
    stamp: &Stamp,
    old: &str,
    new: &str,
) -> Result<(), ExternalDbError> {
    check_password(new)?;
    within_deadline(admin, async {
        let session = Session::admin(admin, &admin.dbname).await?;
        let observed = session.observe(names).await?;
        let inventory = observed.inventory(names);
        let claim = stamps::assess(stamp, names, &admin.server(), &inventory)?;
        if inventory.login_role.is_none() {
            // Nothing to change on the server: the ordinary reconcile creates the role with
            // whatever password the Secret holds, which will be `new`.
            return Ok(());
        }
        if claim.needs_proof && !(authenticates(admin, names, old).await? || authenticates(admin, names, new).await?) {
            return Err(stamps::unproven_conflict(stamp, names, &admin.server(), &inventory));
        }
        roles::set_password(&session, names, new, &mut Verifier::default()).await?;
        drop(session);
        login(admin, names, new).await?;
        if old != new && authenticates(admin, names, old).await? {
            return Err(ExternalDbError::TenantLoginFailed {
                role: names.login_role().to_owned(),
                database: names.database().to_owned(),
                message: "the old password still logs in after the rotation (does the server ask for passwords? see pg_hba.conf)"
                    .to_owned(),
            });
        }
        Ok(())
    })
    .await
}
