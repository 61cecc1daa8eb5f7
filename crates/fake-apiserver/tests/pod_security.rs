//! Pod Security admission in the fake: the `enforce` label of a pod's namespace decides which
//! Pod Security Standards apply, with the real plugin's message.

use fake_apiserver::FakeApiServer;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, PostParams};
use serde_json::{json, Value};

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

async fn namespace(fake: &FakeApiServer, name: &str, level: Option<&str>) -> Api<Pod> {
    let labels = level.map(|l| json!({"pod-security.kubernetes.io/enforce": l})).unwrap_or(json!({}));
    Api::<Namespace>::all(fake.client())
        .create(&PostParams::default(), &obj(json!({"metadata": {"name": name, "labels": labels}})))
        .await
        .unwrap();
    Api::namespaced(fake.client(), name)
}

fn restricted() -> Value {
    json!({"metadata": {"name": "ok"}, "spec": {
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "app", "image": "app:1", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}})
}

async fn refusal(pods: &Api<Pod>, pod: Value) -> String {
    match pods.create(&PostParams::default(), &obj(pod)).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            status.message
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn restricted_refuses_each_violation_with_the_real_reason_and_detail() {
    let fake = FakeApiServer::start().await;
    let pods = namespace(&fake, "strict", Some("restricted")).await;
    pods.create(&PostParams::default(), &obj(restricted())).await.expect("a restricted pod is admitted");

    let bare = json!({"metadata": {"name": "bare"}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}});
    assert_eq!(
        refusal(&pods, bare).await,
        "pods \"bare\" is forbidden: violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false (container \"app\" must \
         set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container \"app\" must set \
         securityContext.capabilities.drop=[\"ALL\"]), runAsNonRoot != true (pod or container \"app\" must set \
         securityContext.runAsNonRoot=true), seccompProfile (pod or container \"app\" must set securityContext.seccompProfile.type to \
         \"RuntimeDefault\" or \"Localhost\")"
    );
    // Several at once, in the real plugin's order (as a Kubernetes 1.36 API server answers).
    let host = json!({"metadata": {"name": "host"}, "spec": {
        "hostNetwork": true, "hostPID": true,
        "securityContext": {"runAsNonRoot": false, "runAsUser": 0, "seccompProfile": {"type": "Unconfined"}},
        "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
        "containers": [{"name": "app", "image": "app:1", "ports": [{"containerPort": 80, "hostPort": 80}],
                        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]}}}]}});
    assert_eq!(
        refusal(&pods, host).await,
        "pods \"host\" is forbidden: violates PodSecurity \"restricted:latest\": host namespaces (hostNetwork=true, hostPID=true), \
         hostPort (container \"app\" uses hostPort 80), unrestricted capabilities (container \"app\" must not include \"NET_ADMIN\" in \
         securityContext.capabilities.add), restricted volume types (volume \"root\" uses restricted volume type \"hostPath\"), \
         runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false), runAsUser=0 (pod must not set runAsUser=0), \
         seccompProfile (pod must not set securityContext.seccompProfile.type to \"Unconfined\")"
    );
    let cases = [
        (
            json!({"containers": [{"name": "app", "image": "app:1", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]}}}]}),
            "unrestricted capabilities (container \"app\" must not include \"NET_ADMIN\" in securityContext.capabilities.add)",
        ),
        (
            json!({"securityContext": {"runAsNonRoot": true, "runAsUser": 0, "seccompProfile": {"type": "RuntimeDefault"}}}),
            "runAsUser=0 (pod must not set runAsUser=0)",
        ),
        (
            json!({"securityContext": {"runAsNonRoot": false, "seccompProfile": {"type": "RuntimeDefault"}}}),
            "runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false)",
        ),
        (
            json!({"containers": [{"name": "app", "image": "app:1", "securityContext": {"allowPrivilegeEscalation": false, "privileged": true, "capabilities": {"drop": ["ALL"]}}}]}),
            "privileged (container \"app\" must not set securityContext.privileged=true)",
        ),
        (json!({"hostNetwork": true, "hostPID": true}), "host namespaces (hostNetwork=true, hostPID=true)"),
        (
            json!({"volumes": [{"name": "root", "hostPath": {"path": "/"}}]}),
            "restricted volume types (volume \"root\" uses restricted volume type \"hostPath\")",
        ),
        (
            json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "Unconfined"}}}),
            "seccompProfile (pod must not set securityContext.seccompProfile.type to \"Unconfined\")",
        ),
    ];
    for (i, (change, want)) in cases.into_iter().enumerate() {
        let mut pod = restricted();
        pod["metadata"]["name"] = json!(format!("case-{i}"));
        for (key, value) in change.as_object().unwrap() {
            pod["spec"][key] = value.clone();
        }
        let message = refusal(&pods, pod).await;
        assert!(message.contains("violates PodSecurity \"restricted:latest\": "), "{message}");
        assert!(message.contains(want), "{want}\nnot in: {message}");
    }
}

#[tokio::test]
async fn baseline_refuses_host_access_only_and_no_label_admits_everything() {
    let fake = FakeApiServer::start().await;
    let baseline = namespace(&fake, "base", Some("baseline")).await;
    let root = json!({"metadata": {"name": "root"}, "spec": {"securityContext": {"runAsUser": 0},
        "containers": [{"name": "app", "image": "app:1", "securityContext": {"capabilities": {"add": ["CHOWN"]}}}]}});
    baseline.create(&PostParams::default(), &obj(root.clone())).await.expect("baseline admits root and default capabilities");
    let host = json!({"metadata": {"name": "host"}, "spec": {"hostIPC": true, "volumes": [{"name": "h", "hostPath": {"path": "/etc"}}],
        "containers": [{"name": "app", "image": "app:1", "ports": [{"containerPort": 80, "hostPort": 80}],
                        "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}]}});
    assert_eq!(
        refusal(&baseline, host.clone()).await,
        "pods \"host\" is forbidden: violates PodSecurity \"baseline:latest\": non-default capabilities (container \"app\" must not include \
         \"SYS_ADMIN\" in securityContext.capabilities.add), host namespaces (hostIPC=true), hostPath volumes (volume \"h\"), hostPort \
         (container \"app\" uses hostPort 80)"
    );
    let open = namespace(&fake, "open", None).await;
    open.create(&PostParams::default(), &obj(host)).await.expect("no enforce label: privileged");
}

#[tokio::test]
async fn statefulset_pods_are_checked_too() {
    let fake = FakeApiServer::start().await;
    namespace(&fake, "strict", Some("restricted")).await;
    let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "strict"},
        "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                 "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "pg", "image": "postgres:17"}]}}}});
    fake.apply_manifests(&serde_json::to_string(&sts).unwrap()).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let refused = fake.objects("v1", "Event").iter().any(|e| {
            e["reason"] == "FailedCreate" && e["message"].as_str().is_some_and(|m| m.contains("violates PodSecurity \"restricted:latest\""))
        });
        if refused {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no FailedCreate Event for the non-compliant pod");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(fake.object("v1", "Pod", "strict", "db-0").is_none());
}
