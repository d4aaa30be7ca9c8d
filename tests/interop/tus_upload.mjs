// Uploads one file to docflow with tus-js-client, the tus reference client,
// the way an application would: 5 MiB chunks, retries after network errors
// (it asks the server for the offset with HEAD and resumes from there).
//
//   node tus_upload.mjs ENDPOINT TOKEN FILE FILENAME
//
// Prints {"url": upload URL, "document": the Document GET /uploads/{id} gives}
// as JSON on stdout; exits 1 (the error on stderr) when the upload fails.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const tus = require('tus-js-client');

const [endpoint, token, file, filename] = process.argv.slice(2);
const data = readFileSync(file);
const headers = { Authorization: `Bearer ${token}` };

const upload = new tus.Upload(data, {
  endpoint,
  chunkSize: 5 * 1024 * 1024,
  retryDelays: [0, 100, 300, 500, 1000, 1000, 2000, 2000],
  headers,
  metadata: { filename, title: 'interop', content_type: 'application/pdf' },
  onError(error) {
    process.stderr.write(`tus_upload: ${error}\n`);
    process.exit(1);
  },
  async onSuccess() {
    const res = await fetch(upload.url, { headers });
    if (res.status !== 200) {
      process.stderr.write(`tus_upload: GET ${upload.url} answered ${res.status}\n`);
      process.exit(1);
    }
    process.stdout.write(JSON.stringify({ url: upload.url, document: await res.json() }) + '\n');
  },
});
upload.start();
