use kube::CustomResourceExt;
use tenant_operator::types::{Tenant, TenantUser};
fn main() {
    std::fs::write("crds/tenants.yaml", serde_yaml::to_string(&Tenant::crd()).unwrap()).unwrap();
    std::fs::write("crds/tenantusers.yaml", serde_yaml::to_string(&TenantUser::crd()).unwrap()).unwrap();
}
