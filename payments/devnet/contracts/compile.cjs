// Compiles the devnet contracts with npm solc (solc-js, no download at run time) and writes one
// artifact per contract beside its source: {contractName, abi, bytecode, deployedBytecode, compiler,
// settings, sourceSha256}. Run with `make contracts`; the artifacts are committed so nothing at run
// or test time needs a compiler. `node compile.cjs --check` exits 1 if an artifact is out of date.
"use strict";
const fs = require("fs");
const path = require("path");
const crypto = require("crypto");
const solc = require("solc");

const here = __dirname;
const check = process.argv.includes("--check");
const settings = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: "cancun",
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};
const sources = {};
for (const file of fs.readdirSync(here).filter((f) => f.endsWith(".sol")).sort()) {
  sources[file] = { content: fs.readFileSync(path.join(here, file), "utf8") };
}
const output = JSON.parse(solc.compile(JSON.stringify({ language: "Solidity", sources, settings })));
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const e of output.errors || []) console.error(e.formattedMessage);
if (errors.length) process.exit(1);

let stale = 0;
for (const [file, contracts] of Object.entries(output.contracts)) {
  const sha = crypto.createHash("sha256").update(sources[file].content).digest("hex");
  for (const [name, c] of Object.entries(contracts)) {
    if (file !== `${name}.sol`) continue; // only the contract a file is named after
    const artifact = {
      contractName: name,
      sourceFile: file,
      sourceSha256: sha,
      compiler: `solc-js ${solc.version()}`,
      settings: { optimizer: settings.optimizer, evmVersion: settings.evmVersion },
      abi: c.abi,
      bytecode: "0x" + c.evm.bytecode.object,
      deployedBytecode: "0x" + c.evm.deployedBytecode.object,
    };
    const target = path.join(here, `${name}.json`);
    const text = JSON.stringify(artifact, null, 1) + "\n";
    if (check) {
      const current = fs.existsSync(target) ? fs.readFileSync(target, "utf8") : "";
      if (current !== text) { console.error(`${name}.json is out of date with ${file}`); stale++; }
    } else {
      fs.writeFileSync(target, text);
      console.log(`wrote ${path.relative(process.cwd(), target)} (${(c.evm.deployedBytecode.object.length / 2)} bytes runtime)`);
    }
  }
}
process.exit(stale ? 1 : 0);
