"""The official Kubernetes Python client against a skiff server: the calls
Python operators make. Run by tests/python_client.rs with the kubeconfig as
the only argument; exits non-zero on the first mismatch."""

import sys
import threading
import time

from kubernetes import client, config, watch

config.load_kube_config(sys.argv[1])
v1 = client.CoreV1Api()
apps = client.AppsV1Api()


def check(what, cond):
    if not cond:
        sys.exit(f"FAIL: {what}")
    print(f"ok: {what}")


check("version", client.VersionApi().get_code().minor == "32")
check("system namespaces", {"default", "kube-system"} <= {n.metadata.name for n in v1.list_namespace().items})
ns = f"py-{int(time.time() * 1000) % 10**9}"
v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))

cm = v1.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c"), data={"a": "1"}))
check("create", cm.metadata.uid and cm.metadata.resource_version)
cm = v1.patch_namespaced_config_map("c", ns, {"data": {"b": "2"}})
check("strategic merge patch", cm.data == {"a": "1", "b": "2"})
try:
    v1.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c")))
    check("duplicate create refused", False)
except client.ApiException as e:
    check("duplicate create is 409", e.status == 409)

dep = client.V1Deployment(
    metadata=client.V1ObjectMeta(name="d"),
    spec=client.V1DeploymentSpec(
        replicas=2,
        selector=client.V1LabelSelector(match_labels={"app": "d"}),
        template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels={"app": "d"}),
            spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="nginx")]),
        ),
    ),
)
d = apps.create_namespaced_deployment(ns, dep)
check("deployment defaults", d.spec.strategy.type == "RollingUpdate" and d.spec.revision_history_limit == 10)
check("scale subresource", apps.patch_namespaced_deployment_scale("d", ns, {"spec": {"replicas": 4}}).spec.replicas == 4)
try:
    bad = client.V1Deployment(metadata=client.V1ObjectMeta(name="bad"), spec=client.V1DeploymentSpec(
        replicas=-1, selector=dep.spec.selector, template=dep.spec.template))
    apps.create_namespaced_deployment(ns, bad)
    check("invalid refused", False)
except client.ApiException as e:
    check("invalid is 422 naming the field", e.status == 422 and "spec.replicas" in e.body)

seen = []


def mutate():
    time.sleep(0.5)
    v1.delete_namespaced_config_map("c", ns)


threading.Thread(target=mutate).start()
w = watch.Watch()
for ev in w.stream(v1.list_namespaced_config_map, ns, timeout_seconds=20):
    seen.append((ev["type"], ev["object"].metadata.name))
    if ev["type"] == "DELETED":
        w.stop()
check("watch sees the current state then the delete", ("ADDED", "c") in seen and seen[-1] == ("DELETED", "c"))
print("python client: all checks passed")
