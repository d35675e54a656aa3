// Uploads one file with tus-js-client (the reference JavaScript tus client), unmodified.
// Usage: node tus_upload.mjs ENDPOINT TOKEN LECTURE_ID FILE
import * as tus from 'tus-js-client';
import fs from 'node:fs';
import path from 'node:path';

const [endpoint, token, lecture, file] = process.argv.slice(2);
const size = fs.statSync(file).size;
await new Promise((resolve, reject) => {
  const upload = new tus.Upload(fs.createReadStream(file), {
    endpoint,
    uploadSize: size,
    chunkSize: 700000,
    retryDelays: [0, 500],
    headers: { Authorization: `Bearer ${token}` },
    metadata: { lecture_id: lecture, filename: path.basename(file) },
    onError: reject,
    onSuccess: () => { console.log(upload.url); resolve(); },
  });
  upload.start();
});
