// Validates the Prometheus operator objects of rendered manifests (PodMonitor,
// PrometheusRule) against the operator's schemas (from the npm
// @kubernetes-models/prometheus-operator package, offline), and checks the dashboards
// ConfigMap holds Grafana dashboards. Usage: node monitoring.mjs rendered.yaml...
import fs from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { PodMonitor, PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';

const kinds = { PodMonitor, PrometheusRule };
let checked = 0;
let dashboards = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of parseAllDocuments(fs.readFileSync(file, 'utf8'))) {
    const obj = doc.toJS();
    if (!obj) continue;
    if (obj.apiVersion === 'monitoring.coreos.com/v1') {
      const Model = kinds[obj.kind];
      if (!Model) throw new Error(`${file}: no schema for Prometheus operator kind ${obj.kind}`);
      new Model(obj).validate(); // throws with the schema violations
      checked++;
    } else if (obj.kind === 'ConfigMap' && obj.metadata?.labels?.grafana_dashboard === '1') {
      for (const [name, text] of Object.entries(obj.data ?? {})) {
        const d = JSON.parse(text);
        if (!d.uid || !d.title || !Number.isInteger(d.schemaVersion) || !Array.isArray(d.panels)) {
          throw new Error(`${file}: ${name} is not a Grafana dashboard (uid, title, schemaVersion, panels)`);
        }
        dashboards++;
      }
    }
  }
}
if (checked === 0) throw new Error('no Prometheus operator objects found');
console.log(`${checked} Prometheus operator objects valid, ${dashboards} dashboards`);
