#!/usr/bin/env node
// Compiles contracts/**/*.sol with the pinned npm `solc` (standard JSON, fixed settings) and writes one
// artifact per deployable contract to connext/chain/artifacts/<Name>.json: the Python package reads
// these without Node. Output is deterministic (sorted keys, fixed settings, no metadata hash in the
// bytecode), so the committed artifacts can be checked against the sources:
//
//   node contracts/compile.js            write the artifacts
//   node contracts/compile.js --check    exit 1 when the committed artifacts differ from a fresh build
//   node contracts/compile.js --out DIR  write somewhere else

"use strict";

const fs = require("fs");
const path = require("path");
const solc = require("solc");

const ROOT = path.resolve(__dirname, "..");
const CONTRACTS = path.join(ROOT, "contracts");
const DEFAULT_OUT = path.join(ROOT, "connext", "chain", "artifacts");
const EXPECTED_SOLC = "0.8.37";

// Changing any of these changes the bytecode of every contract: old channel addresses depend on the
// deployed mastercopy, never on a rebuild, but keep them fixed so artifacts stay reproducible.
const SETTINGS = {
  evmVersion: "cancun",
  optimizer: { enabled: true, runs: 10000 },
  viaIR: true,
  metadata: { bytecodeHash: "none" },
  outputSelection: {
    "*": {
      "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "evm.deployedBytecode.immutableReferences"],
    },
  },
};

function solFiles(dir) {
  const found = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) found.push(...solFiles(full));
    else if (entry.name.endsWith(".sol")) found.push(full);
  }
  return found;
}

function findImport(importPath) {
  const candidates = [path.join(ROOT, "node_modules", importPath), path.join(ROOT, importPath)];
  for (const candidate of candidates) {
    if (fs.existsSync(candidate)) return { contents: fs.readFileSync(candidate, "utf8") };
  }
  return { error: `import not found: ${importPath}` };
}

function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((key) => [key, sortKeys(value[key])]),
    );
  }
  return value;
}

function compile() {
  const version = solc.version();
  if (!version.startsWith(EXPECTED_SOLC + "+")) {
    throw new Error(`solc ${EXPECTED_SOLC} expected, found ${version}: run npm ci`);
  }
  const sources = {};
  for (const file of solFiles(CONTRACTS)) {
    const unit = path.relative(ROOT, file).split(path.sep).join("/");
    sources[unit] = { content: fs.readFileSync(file, "utf8") };
  }
  const input = { language: "Solidity", sources, settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImport }));
  const errors = (output.errors || []).filter((e) => e.severity === "error");
  for (const message of output.errors || []) {
    // Warnings about OpenZeppelin's own sources are theirs to fix; ours and every error are shown.
    const file = message.sourceLocation ? message.sourceLocation.file : "";
    if (message.severity === "error" || !file.startsWith("@openzeppelin/")) {
      process.stderr.write(message.formattedMessage + "\n");
    }
  }
  if (errors.length) throw new Error(`${errors.length} compile error(s)`);

  const artifacts = {};
  for (const unit of Object.keys(output.contracts).sort()) {
    if (!unit.startsWith("contracts/")) continue;
    for (const [name, compiled] of Object.entries(output.contracts[unit])) {
      const bytecode = compiled.evm.bytecode.object;
      // Deployable contracts only: interfaces, abstract contracts and internal libraries have no ABI or code.
      if (!bytecode || compiled.abi.length === 0) continue;
      if (artifacts[name]) throw new Error(`two contracts named ${name}`);
      artifacts[name] = sortKeys({
        contractName: name,
        sourceName: unit,
        compiler: version,
        abi: compiled.abi,
        bytecode: "0x" + bytecode,
        deployedBytecode: "0x" + compiled.evm.deployedBytecode.object,
        immutableReferences: compiled.evm.deployedBytecode.immutableReferences || {},
      });
    }
  }
  return artifacts;
}

function render(artifact) {
  return JSON.stringify(artifact, null, 2) + "\n";
}

function main(argv) {
  const check = argv.includes("--check");
  const outIndex = argv.indexOf("--out");
  const out = outIndex >= 0 ? path.resolve(argv[outIndex + 1]) : DEFAULT_OUT;
  const artifacts = compile();

  if (check) {
    const problems = [];
    const present = fs.existsSync(out) ? fs.readdirSync(out).filter((f) => f.endsWith(".json")) : [];
    for (const [name, artifact] of Object.entries(artifacts)) {
      const file = path.join(out, name + ".json");
      if (!fs.existsSync(file)) problems.push(`missing ${name}.json`);
      else if (fs.readFileSync(file, "utf8") !== render(artifact)) problems.push(`stale ${name}.json`);
    }
    for (const file of present) {
      if (!artifacts[file.slice(0, -5)]) problems.push(`extra ${file}`);
    }
    if (problems.length) {
      process.stderr.write(`artifacts in ${path.relative(ROOT, out)} do not match the sources:\n  ${problems.join("\n  ")}\n`);
      process.stderr.write("run `make compile` and commit the result\n");
      return 1;
    }
    process.stdout.write(`${Object.keys(artifacts).length} artifacts match the sources\n`);
    return 0;
  }

  fs.mkdirSync(out, { recursive: true });
  for (const file of fs.readdirSync(out)) {
    if (file.endsWith(".json") && !artifacts[file.slice(0, -5)]) fs.unlinkSync(path.join(out, file));
  }
  for (const [name, artifact] of Object.entries(artifacts)) {
    fs.writeFileSync(path.join(out, name + ".json"), render(artifact));
  }
  process.stdout.write(`wrote ${Object.keys(artifacts).length} artifacts to ${path.relative(ROOT, out) || "."}\n`);
  return 0;
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (error) {
  process.stderr.write(`compile failed: ${error.message}\n`);
  process.exitCode = 2;
}
