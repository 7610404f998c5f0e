#!/usr/bin/env node
// Entry point of the `mesh-llm` command: runs the compiled CLI from dist/.
const path = require('node:path');
const fs = require('node:fs');
const main = path.join(__dirname, '..', 'dist', 'cli', 'mesh-llm.js');
if (!fs.existsSync(main)) {
  process.stderr.write('mesh-llm: error: the project is not built (dist/ is missing); run `npm install` or `npm run build` first\n');
  process.exit(1);
}
require(main).main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
