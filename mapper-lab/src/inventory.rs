//! The inventory a cluster would show for the lab (`<state>/inventory.yaml`, read by
//! mapper-server's `--inventory`): Namespaces, the Node, each workload's owner chain (a new
//! ReplicaSet per Deployment rollout, the old ones scaled to 0), its pods (running ones, and
//! deleted ones as terminated with their `deletionTimestamp` and `finishedAt`), Services
//! (`clusterIPs`, `ipFamilies`) and one EndpointSlice per Service and family. The top owner of a
//! workload in one of the scenario's `releases` carries Helm's annotations and label.

use std::{collections::BTreeMap, path::Path};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::{
    lab::{LabError, LabPod, LabState, NODE_NAME, ServiceDef, io_err, suffix},
    scenario::{Kind, ReleaseSpec, Scenario, WorkloadSpec},
    topo::{hash, pod_uid},
};

/// Pod labels (with the labels the controllers add).
pub type Labels = BTreeMap<String, String>;

fn owner_ref(api_version: &str, kind: &str, name: &str, uid: &str) -> Value {
    json!([{ "apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true }])
}

/// A Deployment's ReplicaSet at `revision` (0: the first): its name and pod-template-hash.
fn replica_set(w: &WorkloadSpec, revision: u32) -> (String, String) {
    let seed = if revision == 0 {
        format!("{}/{}/rs", w.namespace, w.name)
    } else {
        format!("{}/{}/rs/{revision}", w.namespace, w.name)
    };
    let hash = suffix(&seed, 10);
    (format!("{}-{hash}", w.name), hash)
}

/// The pods of a workload at `revision` (names, their controller reference, labels the
/// controller adds) as the controllers would make them; the owner objects go to `objects`.
pub fn owner_chain(w: &WorkloadSpec, revision: u32, objects: &mut Vec<Value>) -> (Vec<String>, Option<Value>, Labels) {
    let ns = &w.namespace;
    let uid = |what: &str| pod_uid(&format!("{what}/{ns}/{}", w.name));
    let template = json!({ "metadata": { "labels": w.pod_labels() }, "spec": { "containers": [{ "name": "app", "image": "mapper-lab" }] } });
    let selector = json!({ "matchLabels": w.pod_labels() });
    let mut extra_labels = Labels::new();
    // Pod-name suffixes of a later revision differ, as new pods' do.
    let rev = |seed: String| if revision == 0 { seed } else { format!("{seed}/{revision}") };
    let (names, owner) = match w.kind {
        Kind::Deployment => {
            objects.push(json!({ "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": { "name": w.name, "namespace": ns, "uid": uid("deploy"), "generation": revision + 1 },
                "spec": { "replicas": w.replicas, "selector": selector, "template": template } }));
            for r in 0..=revision {
                let (rs, hash) = replica_set(w, r);
                let rs_uid = uid(&format!("rs/{r}"));
                let replicas = if r == revision { w.replicas } else { 0 };
                let mut tpl = template.clone();
                tpl["metadata"]["labels"]["pod-template-hash"] = json!(hash);
                objects.push(json!({ "apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": { "name": rs, "namespace": ns, "uid": rs_uid, "labels": { "pod-template-hash": hash },
                        "annotations": { "deployment.kubernetes.io/revision": (r + 1).to_string() },
                        "ownerReferences": owner_ref("apps/v1", "Deployment", &w.name, &uid("deploy")) },
                    "spec": { "replicas": replicas, "selector": selector, "template": tpl } }));
            }
            let (rs, hash) = replica_set(w, revision);
            extra_labels.insert("pod-template-hash".into(), hash);
            let names = (0..w.replicas).map(|i| format!("{rs}-{}", suffix(&format!("{rs}/{i}"), 5))).collect();
            (names, Some(owner_ref("apps/v1", "ReplicaSet", &rs, &uid(&format!("rs/{revision}")))))
        }
        Kind::StatefulSet => {
            objects.push(json!({ "apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": { "name": w.name, "namespace": ns, "uid": uid("sts") },
                "spec": { "replicas": w.replicas, "selector": selector, "serviceName": w.name, "template": template } }));
            let names = (0..w.replicas).map(|i| format!("{}-{i}", w.name)).collect();
            (names, Some(owner_ref("apps/v1", "StatefulSet", &w.name, &uid("sts"))))
        }
        Kind::DaemonSet => {
            objects.push(json!({ "apiVersion": "apps/v1", "kind": "DaemonSet",
                "metadata": { "name": w.name, "namespace": ns, "uid": uid("ds") },
                "spec": { "selector": selector, "template": template } }));
            let names = (0..w.replicas)
                .map(|i| format!("{}-{}", w.name, suffix(&rev(format!("{ns}/{}/{i}", w.name)), 5)))
                .collect();
            (names, Some(owner_ref("apps/v1", "DaemonSet", &w.name, &uid("ds"))))
        }
        Kind::Job => {
            objects.push(json!({ "apiVersion": "batch/v1", "kind": "Job",
                "metadata": { "name": w.name, "namespace": ns, "uid": uid("job") },
                "spec": { "template": template } }));
            let names =
                (0..w.replicas).map(|i| format!("{}-{}", w.name, suffix(&format!("{ns}/{}/{i}", w.name), 5))).collect();
            (names, Some(owner_ref("batch/v1", "Job", &w.name, &uid("job"))))
        }
        Kind::CronJob => {
            let job = format!("{}-{}", w.name, 29_000_000 + hash(&w.name) % 1_000_000);
            objects.push(json!({ "apiVersion": "batch/v1", "kind": "CronJob",
                "metadata": { "name": w.name, "namespace": ns, "uid": uid("cronjob") },
                "spec": { "schedule": "*/5 * * * *", "jobTemplate": { "spec": { "template": template } } } }));
            objects.push(json!({ "apiVersion": "batch/v1", "kind": "Job",
                "metadata": { "name": job, "namespace": ns, "uid": uid("cronjob-job"),
                    "ownerReferences": owner_ref("batch/v1", "CronJob", &w.name, &uid("cronjob")) },
                "spec": { "template": template } }));
            let names = (0..w.replicas).map(|i| format!("{job}-{}", suffix(&format!("{job}/{i}"), 5))).collect();
            (names, Some(owner_ref("batch/v1", "Job", &job, &uid("cronjob-job"))))
        }
        Kind::Pod => {
            let names = if w.replicas == 1 {
                vec![w.name.clone()]
            } else {
                (0..w.replicas).map(|i| format!("{}-{i}", w.name)).collect()
            };
            (names, None)
        }
    };
    (names, owner, extra_labels)
}

/// A pod's labels: the workload's, and what its controller adds.
pub fn labels_of(scenario: &Scenario, pod: &LabPod) -> Labels {
    let Some(w) = scenario.workload(&pod.workload, &pod.namespace) else { return Labels::new() };
    let (_, _, extra) = owner_chain(w, pod.revision, &mut Vec::new());
    let mut labels = w.pod_labels();
    labels.extend(extra);
    labels
}

fn proto(udp: bool) -> &'static str {
    if udp { "UDP" } else { "TCP" }
}

fn pod_object(scenario: &Scenario, state: &LabState, w: &WorkloadSpec, pod: &LabPod) -> Value {
    let (_, owner, _) = owner_chain(w, pod.revision, &mut Vec::new());
    let mut meta = json!({ "name": pod.name, "namespace": pod.namespace, "uid": pod.uid,
        "labels": labels_of(scenario, pod), "creationTimestamp": pod.created });
    if !w.annotations.is_empty() {
        meta["annotations"] = json!(w.annotations);
    }
    if let Some(o) = owner {
        meta["ownerReferences"] = o;
    }
    let ports: Vec<Value> =
        w.ports.iter().map(|p| json!({ "containerPort": p.port, "protocol": proto(p.udp) })).collect();
    let mut container = json!({ "name": "app", "image": "mapper-lab", "ports": ports });
    if let Some(p) = pod.probes.first() {
        container["readinessProbe"] = json!({ "tcpSocket": { "port": p }, "periodSeconds": 1 });
    }
    let mut ips = vec![json!({ "ip": pod.ip.to_string() })];
    if let Some(v6) = pod.ipv6 {
        ips.push(json!({ "ip": v6.to_string() }));
    }
    let mut host_ips = vec![json!({ "ip": state.node_ip.to_string() })];
    if let Some(v6) = state.node_ipv6 {
        host_ips.push(json!({ "ip": v6.to_string() }));
    }
    let (phase, container_state, ready) = match &pod.finished {
        None => ("Running", json!({ "running": { "startedAt": pod.created } }), true),
        Some(at) => {
            meta["deletionTimestamp"] = json!(at);
            meta["deletionGracePeriodSeconds"] = json!(0);
            let terminated = json!({ "terminated": { "exitCode": 0, "reason": "Completed", "startedAt": pod.created, "finishedAt": at } });
            ("Succeeded", terminated, false)
        }
    };
    json!({ "apiVersion": "v1", "kind": "Pod", "metadata": meta,
        "spec": { "nodeName": NODE_NAME, "hostNetwork": w.host_network, "containers": [container] },
        "status": { "phase": phase, "podIP": pod.ip.to_string(), "podIPs": ips,
            "hostIP": state.node_ip.to_string(), "hostIPs": host_ips, "startTime": pod.created,
            "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }],
            "containerStatuses": [{ "name": "app", "image": "mapper-lab", "imageID": "", "ready": ready,
                "restartCount": 0, "started": ready, "state": container_state }] } })
}

fn service_objects(scenario: &Scenario, state: &LabState, def: &ServiceDef, objects: &mut Vec<Value>) {
    let ports: Vec<Value> = def
        .ports
        .iter()
        .map(|p| {
            let mut v = json!({ "port": p.port, "targetPort": p.target(), "protocol": proto(p.udp()) });
            if let Some(n) = &p.name {
                v["name"] = json!(n);
            }
            v
        })
        .collect();
    let families: Vec<&str> = if scenario.dual_stack() && !def.api { vec!["IPv4", "IPv6"] } else { vec!["IPv4"] };
    let mut spec = json!({ "ports": ports, "type": "ClusterIP", "ipFamilies": families,
        "ipFamilyPolicy": if families.len() > 1 { "PreferDualStack" } else { "SingleStack" } });
    if !def.selector.is_empty() {
        spec["selector"] = json!(def.selector);
    }
    match def.v4 {
        Some(v4) => {
            let mut ips = vec![v4.to_string()];
            ips.extend(def.v6.map(|v6| v6.to_string()));
            spec["clusterIP"] = json!(v4.to_string());
            spec["clusterIPs"] = json!(ips);
        }
        None => {
            spec["clusterIP"] = json!("None");
            spec["clusterIPs"] = json!(["None"]);
        }
    }
    let mut meta = json!({ "name": def.name, "namespace": def.namespace,
        "uid": pod_uid(&format!("svc/{}/{}", def.namespace, def.name)) });
    if def.api {
        meta["labels"] = json!({ "component": "apiserver", "provider": "kubernetes" });
    }
    objects.push(json!({ "apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec }));
    let eports: Vec<Value> = def
        .ports
        .iter()
        .map(|p| {
            let mut v = json!({ "port": p.target(), "protocol": proto(p.udp()) });
            if let Some(n) = &p.name {
                v["name"] = json!(n);
            }
            v
        })
        .collect();
    for family in families {
        let v6 = family == "IPv6";
        let endpoints: Vec<Value> = if def.api {
            vec![json!({ "addresses": [state.node_ip.to_string()], "conditions": { "ready": true } })]
        } else {
            def.endpoints(scenario, state)
                .into_iter()
                .filter_map(|p| {
                    let ip = if v6 { p.ipv6.map(|a| a.to_string())? } else { p.ip.to_string() };
                    Some(json!({ "addresses": [ip], "conditions": { "ready": true, "serving": true, "terminating": false },
                        "nodeName": NODE_NAME, "targetRef": { "kind": "Pod", "name": p.name, "namespace": p.namespace, "uid": p.uid } }))
                })
                .collect()
        };
        // The first family's slice keeps the name the lab always gave it.
        let name = match (def.api, v6) {
            (true, _) => def.name.clone(),
            (false, false) => format!("{}-{}", def.name, suffix(&def.name, 5)),
            (false, true) => format!("{}-{}", def.name, suffix(&format!("{}/IPv6", def.name), 5)),
        };
        let mut labels = json!({ "kubernetes.io/service-name": def.name });
        labels["endpointslice.kubernetes.io/managed-by"] =
            json!(if def.api { "endpointslicemirroring-controller.k8s.io" } else { "endpointslice-controller.k8s.io" });
        objects.push(json!({ "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": { "name": name, "namespace": def.namespace, "labels": labels },
            "addressType": family, "endpoints": endpoints, "ports": eports }));
    }
}

/// The annotation naming the Helm release an object belongs to.
pub const HELM_RELEASE_NAME: &str = "meta.helm.sh/release-name";
/// The annotation naming the namespace of that release.
pub const HELM_RELEASE_NAMESPACE: &str = "meta.helm.sh/release-namespace";
/// The label Helm sets on what it applies.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "Helm");

/// What Helm stamps on every object it applies: the release's two annotations and the
/// managed-by label (added to those the object has).
fn stamp_release(object: &mut Value, release: &str, namespace: &str) {
    let meta = &mut object["metadata"];
    for (field, key, value) in [
        ("annotations", HELM_RELEASE_NAME, release),
        ("annotations", HELM_RELEASE_NAMESPACE, namespace),
        ("labels", MANAGED_BY.0, MANAGED_BY.1),
    ] {
        if !meta[field].is_object() {
            meta[field] = json!({});
        }
        meta[field][key] = json!(value);
    }
}

/// The Secrets Helm's default storage driver keeps for `release`, one per revision: named
/// `sh.helm.release.v1.<name>.v<revision>`, type `helm.sh/release.v1`, labelled `owner=helm`,
/// `name`, `status`, `version` and `modifiedAt`, their `data.release` the base64 of the gzipped
/// release JSON (and base64 once more, as a Secret's data is). Revision R of the newest N was
/// deployed N − R days before `up_at` (Unix seconds).
fn release_records(release: &ReleaseSpec, up_at: u64, objects: &mut Vec<Value>) {
    let newest = release.revisions.iter().map(|r| r.revision).max().unwrap_or(0);
    let deployed_at = |revision: u32| {
        let at = up_at.saturating_sub(u64::from(newest - revision) * 86_400);
        (at, humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(at)).to_string())
    };
    let first = release.revisions.iter().map(|r| r.revision).min().map(|r| deployed_at(r).1).unwrap_or_default();
    for rev in &release.revisions {
        let (chart, version) = rev.chart_parts().unwrap_or((&rev.chart, ""));
        let (at, last) = deployed_at(rev.revision);
        let description = rev
            .description
            .clone()
            .unwrap_or_else(|| if rev.revision == 1 { "Install complete" } else { "Upgrade complete" }.to_owned());
        let json = json!({
            "name": release.name,
            "info": {
                "first_deployed": first,
                "last_deployed": last,
                "deleted": "",
                "description": description,
                "status": rev.status,
            },
            "chart": { "metadata": { "name": chart, "version": version, "apiVersion": "v2" }, "templates": [], "values": {}, "files": [] },
            "config": {},
            "manifest": rev.manifest_text,
            "version": rev.revision,
            "namespace": release.namespace,
        });
        let helm_text = mapper_intents::helm::encode_release(json.to_string().as_bytes());
        objects.push(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": mapper_intents::helm::SECRET_TYPE,
            "metadata": {
                "name": mapper_intents::helm::record_name(&release.name, rev.revision),
                "namespace": release.namespace,
                "labels": {
                    "owner": "helm",
                    "name": release.name,
                    "status": rev.status,
                    "version": rev.revision.to_string(),
                    "modifiedAt": at.to_string(),
                },
            },
            "data": { "release": base64::engine::general_purpose::STANDARD.encode(helm_text) },
        }));
    }
}

/// Writes `<state>/inventory.yaml` as the cluster would show it now.
pub fn write(scenario: &Scenario, state: &LabState, services: &[ServiceDef], state_dir: &Path) -> Result<(), LabError> {
    let mut objects: Vec<Value> = scenario
        .namespaces()
        .iter()
        .map(|n| json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": n, "labels": { "kubernetes.io/metadata.name": n } } }))
        .collect();
    let mut addresses = vec![json!({ "type": "InternalIP", "address": state.node_ip.to_string() })];
    if let Some(v6) = state.node_ipv6 {
        addresses.push(json!({ "type": "InternalIP", "address": v6.to_string() }));
    }
    addresses.push(json!({ "type": "Hostname", "address": NODE_NAME }));
    // The node's bridge is the first address of its pod range, a /24 (and a /64).
    let o = state.node_ip.octets();
    let mut pod_cidrs = vec![format!("{}.{}.{}.0/24", o[0], o[1], o[2])];
    if let Some(v6) = state.node_ipv6 {
        let s = v6.segments();
        pod_cidrs.push(format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3]));
    }
    objects.push(json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": NODE_NAME },
        "spec": { "podCIDR": pod_cidrs[0], "podCIDRs": pod_cidrs },
        "status": { "addresses": addresses } }));
    for w in scenario.workloads.iter().filter(|w| w.round <= state.round) {
        let top = objects.len();
        owner_chain(w, w.revision_at(state.round), &mut objects);
        let first_pod = objects.len();
        for pod in
            state.deleted.iter().chain(&state.pods).filter(|p| p.workload == w.name && p.namespace == w.namespace)
        {
            objects.push(pod_object(scenario, state, w, pod));
        }
        // Helm applied the top of the owner chain: the owner object, or a bare pod itself.
        if let Some(release) = scenario.release_of(w) {
            let stamped = if w.kind == Kind::Pod { first_pod..objects.len() } else { top..top + 1 };
            for object in &mut objects[stamped] {
                stamp_release(object, &release.name, &release.namespace);
            }
        }
    }
    for def in services {
        service_objects(scenario, state, def, &mut objects);
    }
    for release in &scenario.releases {
        release_records(release, state.up_at, &mut objects);
    }
    let inventory =
        mapper_intents::yaml::to_yaml_string(&json!({ "apiVersion": "v1", "kind": "List", "items": objects }))
            .map_err(|e| LabError::Command { command: "write inventory".into(), stderr: e.to_string() })?;
    // Written whole: a server polling it never reads half a file.
    let inv = state_dir.join("inventory.yaml");
    crate::netns::write_whole(&inv, inventory.as_bytes()).map_err(io_err(&inv))
}
