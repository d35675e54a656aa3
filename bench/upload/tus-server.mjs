// @tus/server with @tus/file-store, the peer Lectern's uploads are measured against
// (issue 6). Usage: node tus-server.mjs --dir DIR --port PORT [--host 127.0.0.1]
// Serves tus 1.0 at /files and prints "listening" on stdout once it accepts connections.
import { mkdirSync } from "node:fs";
import { Server } from "@tus/server";
import { FileStore } from "@tus/file-store";

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i !== -1 && i + 1 < process.argv.length) return process.argv[i + 1];
  if (fallback === undefined) {
    console.error(`missing --${name}`);
    process.exit(2);
  }
  return fallback;
}

const directory = arg("dir");
const port = Number(arg("port"));
const host = arg("host", "127.0.0.1");
mkdirSync(directory, { recursive: true });

const server = new Server({
  path: "/files",
  datastore: new FileStore({ directory }),
});
const http = server.listen({ host, port }, () => {
  console.log("listening");
});
http.on("error", (e) => {
  console.error(`tus-server: ${e.message}`);
  process.exit(1);
});
for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    http.close();
    process.exit(0);
  });
}
