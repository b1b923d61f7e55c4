// Validate every object of a Kubernetes YAML stream against the Kubernetes API schemas
// (the kubernetes-models package's validators), as 'pdctl render k8s' writes them.
// usage: node validate.mjs FILE...   prints one line per object; exit 1 on any error.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import * as core from "kubernetes-models/v1";
import * as apps from "kubernetes-models/apps/v1";

const kinds = {
  "v1/ConfigMap": core.ConfigMap,
  "v1/Service": core.Service,
  "apps/v1/Deployment": apps.Deployment,
  "apps/v1/StatefulSet": apps.StatefulSet,
};

// What the schemas do not say but the API server checks: object names (a DNS-1123
// subdomain; a Service's name is a DNS-1035 label) and port numbers.
const dns1123 = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const dns1035 = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
function apiServerChecks(obj) {
  const name = obj.metadata?.name ?? "";
  if (!dns1123.test(name) || name.length > 253) return `bad name '${name}'`;
  if (obj.kind === "Service" && (!dns1035.test(name) || name.length > 63))
    return `bad Service name '${name}'`;
  if (obj.kind === "StatefulSet" && name.length > 52) return `StatefulSet name '${name}' > 52`;
  const ports = [];
  JSON.stringify(obj, (k, v) => {
    if ((k === "port" || k === "containerPort") && typeof v === "number") ports.push(v);
    return v;
  });
  const bad = ports.find((p) => !(p >= 1 && p <= 65535));
  return bad === undefined ? null : `port ${bad} out of range`;
}

let failures = 0;
for (const file of process.argv.slice(2)) {
  const docs = parseAllDocuments(readFileSync(file, "utf8"), { uniqueKeys: true });
  let n = 0;
  for (const doc of docs) {
    if (doc.errors.length > 0) {
      console.log(`${file}: YAML error: ${doc.errors[0].message}`);
      failures++;
      continue;
    }
    const obj = doc.toJS();
    if (obj === null) continue;
    n++;
    const key = `${obj.apiVersion}/${obj.kind}`;
    const Model = kinds[key];
    const name = obj.metadata?.name ?? "(no name)";
    if (Model === undefined) {
      console.log(`${file}: ${key} ${name}: no validator for this kind`);
      failures++;
      continue;
    }
    try {
      new Model(obj).validate();
      const why = apiServerChecks(obj);
      if (why !== null) throw new Error(why);
      console.log(`${file}: ${key} ${name}: valid`);
    } catch (e) {
      console.log(`${file}: ${key} ${name}: INVALID: ${e.message}`);
      failures++;
    }
  }
  if (n === 0) {
    console.log(`${file}: no objects`);
    failures++;
  }
}
process.exit(failures === 0 ? 0 : 1);
