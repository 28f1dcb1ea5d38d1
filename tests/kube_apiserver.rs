//! The Kubernetes test harness against a real kube-apiserver (and its etcd), and
//! `dist/kube-ringlay.yml` against that server: what a `--kube-subnet-mgr` needs of
//! the API works with the admin token; the manifest's ClusterRole allows exactly
//! that (read nodes, patch nodes/status) to its ServiceAccount and no more; the
//! whole manifest passes the server's validation and admission (`kubectl apply
//! --dry-run=server`); and the harness also runs inside a test namespace.
//!
//! The binary comes from `RINGLAY_KUBE_APISERVER` or `scripts/kube-apiserver.sh`
//! (built once per machine); without it, etcd, openssl or curl the tests skip with
//! a reason, and fail with `CI=true`.

mod common;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Mutex;
use std::time::Duration;

use common::kube::{manifest_docs, manifest_rbac, require_kube, KubeApiserver, RINGLAY_SA_USER};
use common::netns::{eventually, require_command, require_root, Netns};

/// One apiserver at a time: each takes a core for several seconds while it starts.
static SERIAL: Mutex<()> = Mutex::new(());

const MERGE_PATCH: &str = "application/strategic-merge-patch+json";
const JSON: &str = "application/json";
/// A user the token file names but no binding grants anything.
const NOBODY: &str = "ringlay-test-nobody";

fn manifest_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/kube-ringlay.yml")
}

fn assert_ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Node as a kubelet registers it, with the annotations flanneld writes.
fn node_json(name: &str, pod_cidr: &str, public_ip: &str, vtep_mac: &str) -> String {
    let backend_data = format!(r#"{{\"VNI\":1,\"VtepMAC\":\"{vtep_mac}\"}}"#);
    format!(
        r#"{{
  "apiVersion": "v1",
  "kind": "Node",
  "metadata": {{
    "name": "{name}",
    "annotations": {{
      "flannel.alpha.coreos.com/kube-subnet-manager": "true",
      "flannel.alpha.coreos.com/backend-type": "vxlan",
      "flannel.alpha.coreos.com/backend-data": "{backend_data}",
      "flannel.alpha.coreos.com/public-ip": "{public_ip}"
    }}
  }},
  "spec": {{ "podCIDR": "{pod_cidr}", "podCIDRs": ["{pod_cidr}"] }}
}}"#
    )
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn start(
    test: &str,
    users: &[&str],
) -> Option<(std::sync::MutexGuard<'static, ()>, KubeApiserver)> {
    let bin = require_kube(test)?;
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let api = KubeApiserver::start(&bin, test, users);
    eprintln!("{test}: kube-apiserver ready after {:?}", api.ready_after());
    Some((guard, api))
}

#[test]
fn nodes_with_flannel_annotations_round_trip_and_status_patches_apply() {
    let Some((_serial, api)) = start("kube-nodes", &[]) else {
        return;
    };
    let admin = api.admin_token();
    for (name, cidr, ip, mac) in [
        ("node-a", "10.244.1.0/24", "192.0.2.1", "0a:00:00:00:00:01"),
        ("node-b", "10.244.2.0/24", "192.0.2.2", "0a:00:00:00:00:02"),
    ] {
        let body = node_json(name, cidr, ip, mac);
        let (code, resp) = api.call("POST", "/api/v1/nodes", admin, Some((JSON, &body)));
        assert_eq!(code, 201, "create {name}: {resp}");
    }

    let (code, body) = api.call("GET", "/api/v1/nodes", admin, None);
    assert_eq!(code, 200, "list nodes: {body}");
    let list = json(&body);
    let items = list["items"].as_array().expect("items");
    let mut seen: Vec<(String, String, String)> = items
        .iter()
        .map(|n| {
            let a = &n["metadata"]["annotations"];
            (
                n["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                n["spec"]["podCIDR"].as_str().unwrap_or_default().to_owned(),
                a["flannel.alpha.coreos.com/public-ip"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("node-a".into(), "10.244.1.0/24".into(), "192.0.2.1".into()),
            ("node-b".into(), "10.244.2.0/24".into(), "192.0.2.2".into()),
        ]
    );
    let data = items[0]["metadata"]["annotations"]["flannel.alpha.coreos.com/backend-data"]
        .as_str()
        .expect("backend-data");
    assert_eq!(
        json(data)["VNI"],
        1,
        "backend-data is flannel's JSON: {data}"
    );

    // What a subnet manager writes for its own node: new annotations and the
    // NetworkUnavailable condition, through the status subresource.
    let patch = r#"{
  "metadata": {"annotations": {
    "flannel.alpha.coreos.com/public-ip": "192.0.2.11",
    "flannel.alpha.coreos.com/backend-data": "{\"VNI\":1,\"VtepMAC\":\"0a:00:00:00:00:11\"}"
  }},
  "status": {"conditions": [{
    "type": "NetworkUnavailable", "status": "False",
    "reason": "RinglayIsUp", "message": "ringlay is running on this node"
  }]}
}"#;
    let (code, body) = api.call(
        "PATCH",
        "/api/v1/nodes/node-a/status",
        admin,
        Some((MERGE_PATCH, patch)),
    );
    assert_eq!(code, 200, "patch node-a/status: {body}");

    let (code, body) = api.call("GET", "/api/v1/nodes/node-a", admin, None);
    assert_eq!(code, 200, "get node-a: {body}");
    let node = json(&body);
    let a = &node["metadata"]["annotations"];
    assert_eq!(a["flannel.alpha.coreos.com/public-ip"], "192.0.2.11");
    assert_eq!(
        json(
            a["flannel.alpha.coreos.com/backend-data"]
                .as_str()
                .expect("backend-data")
        )["VtepMAC"],
        "0a:00:00:00:00:11"
    );
    assert_eq!(a["flannel.alpha.coreos.com/backend-type"], "vxlan");
    assert_eq!(node["spec"]["podCIDR"], "10.244.1.0/24");
    let conditions = node["status"]["conditions"].as_array().expect("conditions");
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "NetworkUnavailable" && c["status"] == "False"),
        "{conditions:?}"
    );
}

#[test]
fn the_manifests_cluster_role_allows_reading_nodes_and_patching_their_status_only() {
    if !require_command("kube-rbac", "kubectl", "kubectl") {
        return;
    }
    let Some((_serial, api)) = start("kube-rbac", &[RINGLAY_SA_USER, NOBODY]) else {
        return;
    };
    let admin = api.admin_token();
    let rbac = manifest_rbac();
    assert_eq!(rbac.matches("\nkind: ").count(), 4, "{rbac}");
    let out = api.kubectl(admin, &["apply", "-f", "-"], Some(&rbac));
    assert_ok(&out, "kubectl apply of the manifest's RBAC objects");
    let node = node_json("node-a", "10.244.1.0/24", "192.0.2.1", "0a:00:00:00:00:01");
    let (code, body) = api.call("POST", "/api/v1/nodes", admin, Some((JSON, &node)));
    assert_eq!(code, 201, "create node-a: {body}");

    let sa = api.token(RINGLAY_SA_USER);
    // The authorizer learns of the new binding through its informer.
    assert!(
        eventually(Duration::from_secs(10), || api
            .call("GET", "/api/v1/nodes/node-a", sa, None)
            .0
            == 200),
        "the ServiceAccount never got node-a"
    );
    let (code, body) = api.call("GET", "/api/v1/nodes", sa, None);
    assert_eq!(code, 200, "list: {body}");
    assert_eq!(json(&body)["items"][0]["metadata"]["name"], "node-a");
    let (code, body) = api.call("GET", "/api/v1/nodes?watch=true&timeoutSeconds=1", sa, None);
    assert_eq!(code, 200, "watch: {body}");
    assert!(body.contains(r#""type":"ADDED""#), "watch events: {body}");

    let patch =
        r#"{"metadata":{"annotations":{"flannel.alpha.coreos.com/public-ip":"192.0.2.11"}}}"#;
    let (code, body) = api.call(
        "PATCH",
        "/api/v1/nodes/node-a/status",
        sa,
        Some((MERGE_PATCH, patch)),
    );
    assert_eq!(code, 200, "patch nodes/status: {body}");
    assert_eq!(
        json(&body)["metadata"]["annotations"]["flannel.alpha.coreos.com/public-ip"],
        "192.0.2.11"
    );

    // Everything else about nodes is refused.
    let (code, body) = api.call("DELETE", "/api/v1/nodes/node-a", sa, None);
    assert_eq!(code, 403, "delete: {body}");
    let (code, body) = api.call(
        "PATCH",
        "/api/v1/nodes/node-a",
        sa,
        Some((MERGE_PATCH, patch)),
    );
    assert_eq!(code, 403, "patch of the node itself: {body}");
    let other = node_json("node-x", "10.244.9.0/24", "192.0.2.9", "0a:00:00:00:00:09");
    let (code, body) = api.call("POST", "/api/v1/nodes", sa, Some((JSON, &other)));
    assert_eq!(code, 403, "create: {body}");
    let (code, body) = api.call("GET", "/api/v1/namespaces/kube-system/secrets", sa, None);
    assert_eq!(code, 403, "secrets: {body}");
    // And the grant is the binding's: a user bound to nothing reads no node.
    let (code, body) = api.call("GET", "/api/v1/nodes", api.token(NOBODY), None);
    assert_eq!(code, 403, "unbound user: {body}");

    let (code, body) = api.call("GET", "/api/v1/nodes/node-a", admin, None);
    assert_eq!(code, 200, "node-a after the refused requests: {body}");
}

#[test]
fn the_whole_manifest_passes_a_server_side_dry_run() {
    if !require_command("kube-dry-run", "kubectl", "kubectl") {
        return;
    }
    let Some((_serial, api)) = start("kube-dry-run", &[]) else {
        return;
    };
    let admin = api.admin_token();
    let version = assert_ok(
        &api.kubectl(admin, &["version", "-o", "json"], None),
        "kubectl version",
    );
    let v = json(&version);
    eprintln!(
        "kubectl {} against kube-apiserver {}",
        v["clientVersion"]["gitVersion"], v["serverVersion"]["gitVersion"]
    );
    assert_eq!(v["serverVersion"]["minor"], "20", "{version}");

    // A dry run creates nothing, so the namespaced objects need the namespace to
    // exist already (as on a cluster where the manifest is re-applied).
    let ns = manifest_docs(&["Namespace"]);
    assert_ok(
        &api.kubectl(admin, &["apply", "-f", "-"], Some(&ns)),
        "kubectl apply of the Namespace",
    );
    let manifest = manifest_path();
    let manifest = manifest.to_str().expect("UTF-8 path");
    let out = api.kubectl(admin, &["apply", "--dry-run=server", "-f", manifest], None);
    let text = assert_ok(&out, "kubectl apply --dry-run=server");
    for kind in [
        "serviceaccount/ringlay",
        "clusterrole.rbac.authorization.k8s.io/ringlay",
        "clusterrolebinding.rbac.authorization.k8s.io/ringlay",
        "configmap/kube-flannel-cfg",
        "daemonset.apps/ringlay",
    ] {
        assert!(text.contains(kind), "{kind} missing from:\n{text}");
    }
    // Nothing was written.
    let (code, body) = api.call(
        "GET",
        "/apis/apps/v1/namespaces/kube-flannel/daemonsets/ringlay",
        admin,
        None,
    );
    assert_eq!(code, 404, "the dry run created the DaemonSet: {body}");
}

#[test]
fn the_harness_runs_inside_a_test_namespace() {
    if !require_root("kube-netns") {
        return;
    }
    let Some(bin) = require_kube("kube-netns") else {
        return;
    };
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ns = Netns::new("rl-kube");
    let ip = Ipv4Addr::new(192, 0, 2, 10);
    ns.sh(&format!("ip addr add {ip}/32 dev lo"));
    let api = KubeApiserver::start_in(&ns, ip, &bin, "kube-netns", &[]);
    eprintln!(
        "kube-netns: kube-apiserver ready after {:?}",
        api.ready_after()
    );
    assert_eq!(api.url(), format!("https://{ip}:6443"));
    // The server advertises the namespace's address as the `kubernetes` service's
    // endpoint (written by a post-start loop, so soon after ready).
    assert!(
        eventually(Duration::from_secs(20), || {
            let (code, body) = api.call(
                "GET",
                "/api/v1/namespaces/default/endpoints/kubernetes",
                api.admin_token(),
                None,
            );
            code == 200 && body.contains(&format!(r#""ip": "{ip}""#))
        }),
        "the kubernetes endpoints never named {ip}"
    );
}
