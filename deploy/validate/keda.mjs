// Validates the KEDA objects of rendered manifests against KEDA's schemas (from the
// npm @kubernetes-models/keda package, offline). Core objects are checked by
// kubernetes-validate. Usage: node keda.mjs rendered.yaml...
import fs from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { ScaledObject, TriggerAuthentication } from '@kubernetes-models/keda/keda.sh/v1alpha1';

const kinds = { ScaledObject, TriggerAuthentication };
let checked = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of parseAllDocuments(fs.readFileSync(file, 'utf8'))) {
    const obj = doc.toJS();
    if (!obj || obj.apiVersion !== 'keda.sh/v1alpha1') continue;
    const Model = kinds[obj.kind];
    if (!Model) throw new Error(`${file}: no schema for KEDA kind ${obj.kind}`);
    new Model(obj).validate(); // throws with the schema violations
    checked++;
  }
}
if (checked === 0) throw new Error('no KEDA objects found');
console.log(`${checked} KEDA objects valid`);
