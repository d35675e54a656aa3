// Uploads one file with tus-js-client (Node) and prints {"bytes", "seconds"} as JSON:
// the time from start() to onSuccess, i.e. until the server acknowledged the last byte.
// Usage: node client.mjs --endpoint URL --file PATH [--chunk-size BYTES|Infinity]
//                        [--header "Name: value"]... [--meta key=value]...
// In Node, tus-js-client takes an fs.ReadStream with a path: it stats the file for the
// size and opens a fresh read stream per chunk (lib/node/sources/FileSource.js), so the
// file is streamed from disk, never held in memory.
import { createReadStream, statSync } from "node:fs";
import { Upload } from "tus-js-client";

const headers = {};
const metadata = {};
let endpoint, file;
let chunkSize = 64 * 1024 * 1024;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const flag = argv[i];
  const value = argv[++i];
  if (value === undefined) {
    console.error(`${flag} needs a value`);
    process.exit(2);
  }
  if (flag === "--endpoint") endpoint = value;
  else if (flag === "--file") file = value;
  else if (flag === "--chunk-size") chunkSize = value === "Infinity" ? Infinity : Number(value);
  else if (flag === "--header") {
    const at = value.indexOf(":");
    headers[value.slice(0, at).trim()] = value.slice(at + 1).trim();
  } else if (flag === "--meta") {
    const at = value.indexOf("=");
    metadata[value.slice(0, at)] = value.slice(at + 1);
  } else {
    console.error(`unknown flag ${flag}`);
    process.exit(2);
  }
}
if (!endpoint || !file || !(chunkSize > 0)) {
  console.error("usage: node client.mjs --endpoint URL --file PATH [--chunk-size N] [--header H]... [--meta k=v]...");
  process.exit(2);
}

const size = statSync(file).size;
const started = process.hrtime.bigint();
const upload = new Upload(createReadStream(file), {
  endpoint,
  chunkSize,
  headers,
  metadata,
  retryDelays: null, // a benchmark wants failures, not hidden retries
  storeFingerprintForResuming: false,
  onError(err) {
    console.error(`upload failed: ${err && err.message ? err.message : err}`);
    process.exit(1);
  },
  onSuccess() {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    console.log(JSON.stringify({ bytes: size, seconds, url: upload.url, chunk_size: String(chunkSize) }));
    process.exit(0);
  },
});
upload.start();
