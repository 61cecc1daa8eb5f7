use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// Read access to a status' conditions by type.
pub trait Conditions {
    fn conditions(&self) -> &[Condition];

    fn condition(&self, type_: impl AsRef<str>) -> Option<&Condition> {
        self.conditions().iter().find(|c| c.type_ == type_.as_ref())
    }

    fn is_true(&self, type_: impl AsRef<str>) -> bool {
        self.condition(type_).is_some_and(|c| c.status == "True")
    }
}

impl Conditions for super::TenantStatus {
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
}

impl Conditions for super::TenantUserStatus {
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
}

/// Put `new` into `conditions`, keeping the previous `lastTransitionTime` when the status did
/// not change, so that an unchanged condition produces an identical status (and no write).
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            if existing.status == new.status {
                new.last_transition_time = existing.last_transition_time.clone();
            }
            *existing = new;
        }
        None => conditions.push(new),
    }
}
