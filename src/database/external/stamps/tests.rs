use super::*;
use crate::types::Environment;

const UID: &str = "0f4c2a9e-1b2c-4d5e-8f90-a1b2c3d4e5f6";
const OTHER_UID: &str = "99999999-1b2c-4d5e-8f90-a1b2c3d4e5f6";
const SERVER: &str = "db.example:5432";

fn stamp() -> Stamp {
    Stamp::new("acme", UID).unwrap()
}

fn names() -> ExternalNames {
    ExternalNames::new("acme", Environment::Dev).unwrap()
}

fn at() -> Timestamp {
    "2025-01-31T12:00:00Z".parse().unwrap()
}

#[test]
fn stamps_print_in_the_documented_format() {
    assert_eq!(stamp().record().to_string(), format!("tenancy.platform.dev/tenant=acme; tenancy.platform.dev/tenant-uid={UID}"));
    assert_eq!(
        stamp().retained_record(at()).to_string(),
        format!(
            "tenancy.platform.dev/tenant=acme; tenancy.platform.dev/tenant-uid={UID}; \
             tenancy.platform.dev/retained=true; tenancy.platform.dev/retained-at=2025-01-31T12:00:00Z"
        )
    );
}

#[test]
fn stamps_round_trip() {
    let records = [
        stamp().record(),
        stamp().retained_record(at()),
        StampRecord { retained: true, retained_at: None, ..stamp().record() },
        Stamp::new(&format!("a{}", "-b".repeat(19) + "c"), "x").unwrap().record(),
    ];
    for record in records {
        assert_eq!(StampRecord::parse(&record.to_string()), Some(record.clone()), "{record}");
        assert_eq!(Mark::read(Some(&record.to_string())), Mark::Stamped(record));
    }
}

#[test]
fn anything_but_an_exact_stamp_reads_as_unstamped() {
    let base = format!("tenancy.platform.dev/tenant=acme; tenancy.platform.dev/tenant-uid={UID}");
    let malformed = [
        String::new(),
        "my own notes about this database".to_owned(),
        "tenancy.platform.dev/tenant=acme".to_owned(),
        format!("tenancy.platform.dev/tenant-uid={UID}; tenancy.platform.dev/tenant=acme"),
        format!("tenancy.platform.dev/tenant=Acme; tenancy.platform.dev/tenant-uid={UID}"),
        format!("tenancy.platform.dev/tenant=acme;tenancy.platform.dev/tenant-uid={UID}"),
        format!("tenancy.platform.dev/tenant=a;b; tenancy.platform.dev/tenant-uid={UID}"),
        "tenancy.platform.dev/tenant=acme; tenancy.platform.dev/tenant-uid=".to_owned(),
        "tenancy.platform.dev/tenant=acme; tenancy.platform.dev/tenant-uid=a b".to_owned(),
        "tenancy.platform.dev/tenant=acme; tenancy.platform.dev/tenant-uid=a=b".to_owned(),
        format!("{base} "),
        format!("{base}; "),
        format!("{base}; tenancy.platform.dev/retained=false"),
        format!("{base}; tenancy.platform.dev/retained=yes"),
        format!("{base}; tenancy.platform.dev/retained-at=2025-01-31T12:00:00Z"),
        format!("{base}; tenancy.platform.dev/retained=true; tenancy.platform.dev/retained-at=yesterday"),
        format!("{base}; tenancy.platform.dev/retained=true; tenancy.platform.dev/retained=true"),
        format!("{base}; tenancy.platform.dev/retained=true; tenancy.platform.dev/retained-at=2025-01-31T12:00:00Z; x=y"),
        format!("{base}; tenancy.platform.dev/tenant-uid={OTHER_UID}"),
        format!("{base}\n"),
    ];
    for comment in &malformed {
        assert_eq!(StampRecord::parse(comment), None, "{comment:?}");
        assert_eq!(Mark::read(Some(comment)), Mark::Unstamped, "{comment:?}");
    }
    assert_eq!(Mark::read(None), Mark::Unstamped);
}

#[test]
fn the_old_retained_mark_is_recognised_but_unstamped() {
    let old = "tenancy.platform.dev/retained=true; the Tenant was deleted with deletionPolicy Retain at 2024-05-01T00:00:00Z; \
               re-creating the Tenant adopts this database";
    let mark = Mark::read(Some(old));
    assert_eq!(mark, Mark::LegacyRetained);
    assert!(mark.is_retained() && !mark.is_by(&stamp()));
    // The new retained stamp does not start with the old prefix, so the two never mix up.
    assert!(!stamp().retained_record(at()).to_string().starts_with(LEGACY_RETAINED_MARK));
}

#[test]
fn marks_know_whose_they_are() {
    let ours = Mark::Stamped(stamp().record());
    assert!(ours.is_by(&stamp()) && ours.is_live_by(&stamp()) && !ours.is_retained());
    let retained = Mark::Stamped(stamp().retained_record(at()));
    assert!(retained.is_by(&stamp()) && !retained.is_live_by(&stamp()) && retained.is_retained());
    let other = Mark::Stamped(Stamp::new("acme", OTHER_UID).unwrap().record());
    assert!(!other.is_by(&stamp()) && !other.is_live_by(&stamp()));
    let other_slug = Mark::Stamped(Stamp::new("globex", UID).unwrap().record());
    assert!(!other_slug.is_by(&stamp()));
}

#[test]
fn stamps_refuse_what_could_not_be_parsed_back() {
    for (slug, uid) in
        [("acme", ""), ("acme", "a;b"), ("acme", "a b"), ("acme", "a=b"), ("acme", "ü"), ("Acme", UID), ("a_b", UID), ("", UID)]
    {
        assert_eq!(Stamp::new(slug, uid).unwrap_err().reason().as_str(), "InvalidDatabaseName", "{slug:?} {uid:?}");
    }
    assert!(Stamp::new("acme", &"a".repeat(MAX_UID_LEN + 1)).is_err());
}

#[test]
fn descriptions_say_what_the_comment_says() {
    assert_eq!(Mark::Unstamped.describe(None), "it carries no tenant stamp");
    let long = "x".repeat(200);
    let described = Mark::Unstamped.describe(Some(&long));
    assert!(described.contains('…') && described.chars().count() < 140, "{described}");
    let other = Mark::Stamped(StampRecord { retained: true, ..Stamp::new("acme", OTHER_UID).unwrap().record() });
    assert_eq!(other.describe(None), format!("it is stamped for Tenant `acme` with UID {OTHER_UID}, retained"));
}

/// An inventory of the three objects with the given comments (`None`: absent,
/// `Some(None)`: present without a comment).
fn inventory<'a>(
    database: Option<Option<&'a str>>,
    database_owner: &'a str,
    owner: Option<Option<&'a str>>,
    login: Option<Option<&'a str>>,
    names: &'a ExternalNames,
) -> Inventory<'a> {
    Inventory {
        database: database.map(|comment| Found { kind: Kind::Database, name: names.database(), comment }),
        database_owner: database.map(|_| database_owner),
        owner_role: owner.map(|comment| Found { kind: Kind::Role, name: names.owner_role(), comment }),
        login_role: login.map(|comment| Found { kind: Kind::Role, name: names.login_role(), comment }),
    }
}

fn conflict(result: Result<Claim, ExternalDbError>) -> (String, String, String) {
    match result {
        Err(ExternalDbError::DatabaseConflict { object, found, remedy }) => (object, found, remedy),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[test]
fn nothing_there_or_everything_ours_needs_nothing() {
    let names = names();
    let ours = stamp().record().to_string();
    let owner = names.owner_role();
    for found in [
        inventory(None, owner, None, None, &names),
        inventory(Some(Some(&ours)), owner, Some(Some(&ours)), Some(Some(&ours)), &names),
        // Ours with drifted ownership is repaired, not refused.
        inventory(Some(Some(&ours)), "someone", None, Some(Some(&ours)), &names),
    ] {
        assert_eq!(assess(&stamp(), &names, SERVER, &found).unwrap(), Claim::default());
    }
}

#[test]
fn retained_by_an_earlier_tenant_of_this_slug_is_adopted_only_with_consent() {
    let names = names();
    let previous = Stamp::new("acme", OTHER_UID).unwrap().retained_record(at()).to_string();
    let ours = stamp().record().to_string();
    let found = inventory(Some(Some(&previous)), names.owner_role(), Some(Some(&previous)), Some(Some(&ours)), &names);
    match assess(&stamp(), &names, SERVER, &found) {
        Err(ExternalDbError::RetainedByEarlierTenant { object, previous_uid }) => {
            assert_eq!((object.as_str(), previous_uid.as_str()), ("database `acme_dev` on db.example:5432", OTHER_UID));
        }
        other => panic!("an earlier Tenant's retained database needs consent: {other:?}"),
    }
    let unrelated = stamp().adopting(Some(UID.replace('0', "1").as_str()));
    assert!(assess(&unrelated, &names, SERVER, &found).is_err(), "consent names another UID");
    let claim = assess(&stamp().adopting(Some(OTHER_UID)), &names, SERVER, &found).unwrap();
    assert_eq!(claim, Claim { needs_proof: false, adopted_retained: true, previous_tenant_uid: Some(OTHER_UID.to_owned()) });
    // This Tenant's own retained objects (an environment removed and added again) need none.
    let own = stamp().retained_record(at()).to_string();
    let found = inventory(Some(Some(&own)), names.owner_role(), Some(Some(&own)), Some(Some(&own)), &names);
    assert_eq!(assess(&stamp(), &names, SERVER, &found).unwrap(), Claim { adopted_retained: true, ..Claim::default() });
}

#[test]
fn another_tenants_stamp_is_a_conflict_naming_the_object_and_the_way_out() {
    let names = names();
    let other = Stamp::new("acme", OTHER_UID).unwrap().record().to_string();
    let found = inventory(Some(Some(&other)), names.owner_role(), None, None, &names);
    let (object, found, remedy) = conflict(assess(&stamp(), &names, SERVER, &found));
    assert_eq!(object, "database `acme_dev` on db.example:5432");
    assert!(found.contains(OTHER_UID), "{found}");
    assert!(remedy.contains(UID) && remedy.contains(&format!("`spec.adoptRetainedFrom: {OTHER_UID}`")), "{remedy}");
    // With that consent it is adopted.
    let claim =
        assess(&stamp().adopting(Some(OTHER_UID)), &names, SERVER, &inventory(Some(Some(&other)), names.owner_role(), None, None, &names));
    assert_eq!(claim.unwrap(), Claim { previous_tenant_uid: Some(OTHER_UID.to_owned()), ..Claim::default() });

    // A role alone is checked the same way, with no database at all.
    let role_only = inventory(None, "", None, Some(Some(&other)), &names);
    let (object, _, remedy) = conflict(assess(&stamp(), &names, SERVER, &role_only));
    assert_eq!(object, "role `acme_dev_app` on db.example:5432");
    assert!(remedy.contains("spec.adoptRetainedFrom"), "{remedy}");

    let other_slug = Stamp::new("globex", UID).unwrap().record().to_string();
    let found = inventory(None, "", Some(Some(&other_slug)), None, &names);
    let (_, found, remedy) = conflict(assess(&stamp(), &names, SERVER, &found));
    assert!(found.contains("`globex`") && remedy.contains("globex"), "{found} / {remedy}");
}

#[test]
fn unstamped_objects_need_the_login_roles_proof() {
    let names = names();
    let owner = names.owner_role();
    let legacy = "tenancy.platform.dev/retained=true; old";
    for (found, adopted_retained) in [
        (inventory(Some(None), owner, Some(None), Some(None), &names), false),
        (inventory(Some(Some("notes")), owner, Some(None), Some(None), &names), false),
        (inventory(Some(Some(legacy)), owner, Some(None), Some(None), &names), true),
        (inventory(None, owner, None, Some(None), &names), false),
    ] {
        let claim = assess(&stamp(), &names, SERVER, &found).unwrap();
        assert_eq!(claim, Claim { needs_proof: true, adopted_retained, previous_tenant_uid: None });
    }
}

#[test]
fn unstamped_objects_without_a_login_role_or_with_a_stranger_owner_conflict() {
    let names = names();
    // A foreign database, no roles: nothing can prove it is the tenant's.
    let (object, found, remedy) = conflict(assess(&stamp(), &names, SERVER, &inventory(Some(None), "bob", None, None, &names)));
    assert_eq!(object, "database `acme_dev` on db.example:5432");
    assert!(found.contains("no tenant stamp") && found.contains("`bob`"), "{found}");
    assert!(remedy.contains("COMMENT ON") && remedy.contains(&stamp().record().to_string()), "{remedy}");

    // Owned by the tenant's owner role, but no login role to prove it.
    let owner = names.owner_role();
    let (_, found, _) = conflict(assess(&stamp(), &names, SERVER, &inventory(Some(None), owner, Some(None), None, &names)));
    assert!(found.contains("no login role `acme_dev_app`"), "{found}");

    // Even the tenant's own login role does not make someone else's database the tenant's.
    let ours = stamp().record().to_string();
    let (_, found, _) =
        conflict(assess(&stamp(), &names, SERVER, &inventory(Some(None), "bob", Some(Some(&ours)), Some(Some(&ours)), &names)));
    assert!(found.contains("`bob`"), "{found}");

    // A foreign owner role alone.
    let (object, _, _) = conflict(assess(&stamp(), &names, SERVER, &inventory(None, "", Some(Some("x")), None, &names)));
    assert_eq!(object, "role `acme_dev_owner` on db.example:5432");
}

#[test]
fn a_failed_proof_names_the_unstamped_object() {
    let names = names();
    let ours = stamp().record().to_string();
    let found = inventory(Some(Some(&ours)), names.owner_role(), Some(Some(&ours)), Some(None), &names);
    match unproven_conflict(&stamp(), &names, SERVER, &found) {
        ExternalDbError::DatabaseConflict { object, found, .. } => {
            assert_eq!(object, "role `acme_dev_app` on db.example:5432");
            assert!(found.contains("does not accept the password"), "{found}");
        }
        other => panic!("{other:?}"),
    }
}
