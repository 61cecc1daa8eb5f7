//! No two tenants share a hostname (SPEC §8 rule 6): an index of the hosts every Tenant
//! claims, where the older Tenant (creation time, then name) keeps a contested host.
//!
//! The index is filled from the whole Tenant cache before the first reconcile, so a newer
//! Tenant cannot win a host just because it happened to be reconciled first after a restart;
//! afterwards every reconcile re-registers its own Tenant's hosts.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::Timestamp;

/// Who is older: creation time first, then name (creation times have one-second resolution).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seniority {
    pub created: Option<Timestamp>,
    pub name: String,
}

#[derive(Debug, Default)]
pub struct HostIndex {
    hosts_of: HashMap<String, (Seniority, Vec<String>)>,
    claimants: HashMap<String, BTreeSet<Seniority>>,
}

impl HostIndex {
    /// Record the hosts `tenant` wants now (replacing what it wanted before). When they
    /// changed, returns the newer Tenants that claim any of them: they must be reconciled to
    /// give the hosts up.
    pub fn register(&mut self, tenant: Seniority, hosts: Vec<String>) -> Vec<String> {
        if self.hosts_of.get(&tenant.name).is_some_and(|(seniority, known)| *seniority == tenant && *known == hosts) {
            return Vec::new();
        }
        self.unregister(&tenant.name);
        let mut displaced = BTreeSet::new();
        for host in &hosts {
            let claimants = self.claimants.entry(host.clone()).or_default();
            displaced.extend(claimants.iter().filter(|other| **other > tenant).map(|other| other.name.clone()));
            claimants.insert(tenant.clone());
        }
        self.hosts_of.insert(tenant.name.clone(), (tenant, hosts));
        displaced.into_iter().collect()
    }

    /// Forget a Tenant that is gone.
    pub fn unregister(&mut self, name: &str) {
        let Some((seniority, hosts)) = self.hosts_of.remove(name) else { return };
        for host in hosts {
            if let Some(claimants) = self.claimants.get_mut(&host) {
                claimants.remove(&seniority);
                if claimants.is_empty() {
                    self.claimants.remove(&host);
                }
            }
        }
    }

    /// The hosts of `tenant` that an older Tenant claims, with that Tenant's name.
    pub fn contested(&self, tenant: &Seniority) -> BTreeMap<String, String> {
        let Some((_, hosts)) = self.hosts_of.get(&tenant.name) else { return BTreeMap::new() };
        hosts
            .iter()
            .filter_map(|host| {
                let oldest = self.claimants.get(host)?.iter().next()?;
                (oldest != tenant).then(|| (host.clone(), oldest.name.clone()))
            })
            .collect()
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
        let mut index = HostIndex::default();
        assert!(index.register(newer.clone(), vec![host.clone(), "flop.xconsole.example".into()]).is_empty());
        assert!(index.contested(&newer).is_empty(), "alone, the newer tenant holds the host");
        assert_eq!(index.register(older.clone(), vec![host.clone()]), vec!["flop".to_string()], "the newer one must let go");
        assert!(index.register(older.clone(), vec![host.clone()]).is_empty(), "an unchanged registration displaces nobody");
        assert!(index.contested(&older).is_empty());
        assert_eq!(index.contested(&newer), BTreeMap::from([(host.clone(), "flip".to_string())]));
        index.unregister("flip");
        assert!(index.contested(&newer).is_empty(), "the host is free again once the older tenant is gone");
    }

    #[test]
    fn same_second_is_decided_by_name_and_re_registration_replaces() {
        let (a, b) = (tenant("a", 5), tenant("b", 5));
        let mut index = HostIndex::default();
        index.register(a.clone(), vec!["h".into()]);
        index.register(b.clone(), vec!["h".into()]);
        assert_eq!(index.contested(&b).get("h").map(String::as_str), Some("a"));
        index.register(a.clone(), vec!["other".into()]);
        assert!(index.contested(&b).is_empty(), "a gave the host up");
    }
}
