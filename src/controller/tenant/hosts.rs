//! No two tenants share a hostname (SPEC §8 rule 6): an index of the hosts every Tenant
//! claims, where the older Tenant (creation time, then name) keeps a contested host.
//!
//! The index is filled from the whole Tenant cache before the first reconcile, so a newer
//! Tenant cannot win a host just because it happened to be reconciled first after a restart;
//! afterwards every reconcile re-registers its own Tenant's hosts.
//!
//! A fleet has tens of thousands of hosts, nearly each claimed by one Tenant: the index keeps
//! a hash per host and one shared name per Tenant, not the host names. Hashes can collide, so
//! what it reports are candidates; the caller confirms them against the other Tenant's hosts
//! (see `Context::claim_hosts`).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

use jiff::Timestamp;

use crate::hash::hash_str;

/// Who is older: creation time first, then name (creation times have one-second resolution).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seniority {
    pub created: Option<Timestamp>,
    pub name: String,
}

#[derive(Debug, Default)]
pub struct HostIndex {
    /// Per Tenant: when it was created and the hashes of the hosts it claims.
    claims: HashMap<Arc<str>, Claim>,
    /// Per host hash: the Tenants claiming it.
    claimants: HashMap<u64, Claimants>,
}

#[derive(Debug)]
struct Claim {
    created: Option<Timestamp>,
    hosts: Box<[u64]>,
}

/// The Tenants claiming one host: nearly always exactly one.
#[derive(Debug)]
enum Claimants {
    One(Arc<str>),
    Many(Vec<Arc<str>>),
}

impl Claimants {
    fn names(&self) -> &[Arc<str>] {
        match self {
            Claimants::One(name) => std::slice::from_ref(name),
            Claimants::Many(names) => names,
        }
    }
}

impl HostIndex {
    /// Record the hosts `tenant` wants now (replacing what it wanted before). When they
    /// changed, returns the newer Tenants that claim any of them: they must be reconciled to
    /// give the hosts up.
    pub fn register(&mut self, tenant: Seniority, hosts: &[String]) -> Vec<String> {
        let hashes: Box<[u64]> = hosts.iter().map(|host| hash_str(host)).collect();
        if self.claims.get(tenant.name.as_str()).is_some_and(|claim| claim.created == tenant.created && claim.hosts == hashes) {
            return Vec::new();
        }
        self.unregister(&tenant.name);
        let name: Arc<str> = Arc::from(tenant.name.as_str());
        let mut displaced = BTreeSet::new();
        for &host in hashes.iter() {
            let others = self.claimants.get(&host).map(Claimants::names).unwrap_or_default();
            displaced.extend(others.iter().filter(|other| self.seniority(other).is_some_and(|s| s > tenant)).map(|o| o.to_string()));
            let updated = match self.claimants.remove(&host) {
                None => Claimants::One(name.clone()),
                Some(Claimants::One(other)) if other == name => Claimants::One(other),
                Some(Claimants::One(other)) => Claimants::Many(vec![other, name.clone()]),
                Some(Claimants::Many(mut names)) => {
                    if !names.contains(&name) {
                        names.push(name.clone());
                    }
                    Claimants::Many(names)
                }
            };
            self.claimants.insert(host, updated);
        }
        self.claims.insert(name, Claim { created: tenant.created, hosts: hashes });
        displaced.into_iter().collect()
    }

    /// Forget a Tenant that is gone.
    pub fn unregister(&mut self, name: &str) {
        let Some(claim) = self.claims.remove(name) else { return };
        for host in claim.hosts.iter() {
            let remaining = match self.claimants.remove(host) {
                Some(Claimants::Many(mut names)) => {
                    names.retain(|other| &**other != name);
                    match names.len() {
                        0 => None,
                        1 => names.pop().map(Claimants::One),
                        _ => Some(Claimants::Many(names)),
                    }
                }
                Some(Claimants::One(other)) if &*other != name => Some(Claimants::One(other)),
                _ => None,
            };
            if let Some(remaining) = remaining {
                self.claimants.insert(*host, remaining);
            }
        }
    }

    /// The hosts of `tenant` (`hosts`, as registered) that an older Tenant may claim, with
    /// that Tenant's name: candidates, since two hosts can share a hash.
    pub fn contested(&self, tenant: &Seniority, hosts: &[String]) -> BTreeMap<String, String> {
        hosts
            .iter()
            .filter_map(|host| {
                let oldest = self.claimants.get(&hash_str(host))?.names().iter().filter_map(|name| self.seniority(name)).min()?;
                (oldest != *tenant).then(|| (host.clone(), oldest.name))
            })
            .collect()
    }

    fn seniority(&self, name: &str) -> Option<Seniority> {
        self.claims.get(name).map(|claim| Seniority { created: claim.created, name: name.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str, second: i64) -> Seniority {
        Seniority { created: Timestamp::from_second(second).ok(), name: name.into() }
    }

    #[test]
    fn the_older_tenant_keeps_a_contested_host_whatever_the_order() {
        let (older, newer) = (tenant("flip", 10), tenant("flop", 20));
        let host = "flip-dev.xconsole.example".to_string();
        let newer_hosts = vec![host.clone(), "flop.xconsole.example".into()];
        let mut index = HostIndex::default();
        assert!(index.register(newer.clone(), &newer_hosts).is_empty());
        assert!(index.contested(&newer, &newer_hosts).is_empty(), "alone, the newer tenant holds the host");
        assert_eq!(index.register(older.clone(), std::slice::from_ref(&host)), vec!["flop".to_string()], "the newer one must let go");
        assert!(index.register(older.clone(), std::slice::from_ref(&host)).is_empty(), "an unchanged registration displaces nobody");
        assert!(index.contested(&older, std::slice::from_ref(&host)).is_empty());
        assert_eq!(index.contested(&newer, &newer_hosts), BTreeMap::from([(host.clone(), "flip".to_string())]));
        index.unregister("flip");
        assert!(index.contested(&newer, &newer_hosts).is_empty(), "the host is free again once the older tenant is gone");
    }

    #[test]
    fn same_second_is_decided_by_name_and_re_registration_replaces() {
        let (a, b, c) = (tenant("a", 5), tenant("b", 5), tenant("c", 5));
        let h = vec!["h".to_string()];
        let mut index = HostIndex::default();
        index.register(a.clone(), &h);
        index.register(b.clone(), &h);
        index.register(c.clone(), &h);
        assert_eq!(index.contested(&b, &h).get("h").map(String::as_str), Some("a"));
        assert_eq!(index.contested(&c, &h).get("h").map(String::as_str), Some("a"));
        index.register(a.clone(), &["other".to_string()]);
        assert!(index.contested(&b, &h).is_empty(), "a gave the host up");
        assert_eq!(index.contested(&c, &h).get("h").map(String::as_str), Some("b"));
        index.unregister("b");
        index.unregister("c");
        assert!(index.claimants.keys().all(|host| *host == hash_str("other")), "nothing left behind: {:?}", index.claimants);
    }
}
