//! `external::rotate_password` against a real PostgreSQL server (`.ci/postgres.sh`): the new
//! password logs in and the old one does not, only this Tenant's role is changed, and a
//! database not created yet needs nothing on the server.

mod support;

use support::fixtures::{logs_in, test_pg_admin};
use tenant_operator::database::external::{drop_database, ensure_database, rotate_password, ExternalNames, Stamp};
use tenant_operator::types::Environment;

fn tenant() -> (ExternalNames, Stamp) {
    let slug = format!("rot-{:08x}", rand::random::<u32>());
    let h = format!("{:032x}", rand::random::<u128>());
    let uid = format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]);
    (ExternalNames::new(&slug, Environment::Dev).unwrap(), Stamp::new(&slug, &uid).unwrap())
}

#[tokio::test]
async fn the_new_password_logs_in_and_the_old_one_does_not() {
    let Some(admin) = test_pg_admin("external_rotation") else { return };
    let (names, stamp) = tenant();
    ensure_database(&admin, &names, &stamp, "old-password-1").await.unwrap();
    rotate_password(&admin, &names, &stamp, "old-password-1", "new-password-2").await.unwrap();
    assert!(logs_in(&admin, &names, "new-password-2").await);
    assert!(!logs_in(&admin, &names, "old-password-1").await);
    // Interrupted after the server changed: calling it again with the same passwords is harmless.
    rotate_password(&admin, &names, &stamp, "old-password-1", "new-password-2").await.unwrap();
    assert!(logs_in(&admin, &names, "new-password-2").await);
    // The ordinary reconcile with the new password changes nothing more.
    let outcome = ensure_database(&admin, &names, &stamp, "new-password-2").await.unwrap();
    assert!(!outcome.password_set, "{outcome:?}");
    drop_database(&admin, &names, &stamp).await.unwrap();
}

#[tokio::test]
async fn another_tenants_role_is_left_alone() {
    let Some(admin) = test_pg_admin("external_rotation") else { return };
    let (names, stamp) = tenant();
    ensure_database(&admin, &names, &stamp, "theirs-1").await.unwrap();
    let intruder = Stamp::new(stamp.slug(), "00000000-0000-4000-8000-000000000000").unwrap();
    let error = rotate_password(&admin, &names, &intruder, "theirs-1", "mine-2").await.unwrap_err();
    assert_eq!(error.reason().as_str(), "DatabaseConflict", "{error}");
    assert!(logs_in(&admin, &names, "theirs-1").await, "untouched");
    assert!(!logs_in(&admin, &names, "mine-2").await);
    drop_database(&admin, &names, &stamp).await.unwrap();
}

#[tokio::test]
async fn without_a_role_yet_there_is_nothing_to_change() {
    let Some(admin) = test_pg_admin("external_rotation") else { return };
    let (names, stamp) = tenant();
    rotate_password(&admin, &names, &stamp, "old", "new-password").await.unwrap();
    assert!(!logs_in(&admin, &names, "new-password").await, "no role was created");
    ensure_database(&admin, &names, &stamp, "new-password").await.unwrap();
    assert!(logs_in(&admin, &names, "new-password").await, "the ordinary reconcile creates it with the new password");
    drop_database(&admin, &names, &stamp).await.unwrap();
}
