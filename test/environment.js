// The jest test environment of mesh-llm: jest-environment-node with two changes.
//
// 1. A vanilla V8 context. jest runs each test file in a vm context; Node normally
//    "contextifies" that context's global object (jest 30 even wraps it in a Proxy), so
//    every global lookup from test or library code (Math, Float32Array, ...) goes through
//    C++ interceptors and a Proxy trap, which V8 can neither cache nor inline. The model's
//    numeric kernels call Math.fround / Math.exp in their inner loops and ran about 10x
//    slower under jest than under node (nodejs/node#31658). Node >= 20.18 can create a
//    context with an ordinary global object (vm.constants.DONT_CONTEXTIFY); we make jest
//    build its context that way. Globals still get jest's per-file isolation: the context
//    is new for every test file. Without the constant (older Node) nothing changes.
//
// 2. Host typed arrays. The test context's typed-array constructors differ from the
//    host's; onnxruntime-node (and Buffer's fast paths) reject arrays made from them. The
//    test context gets the host's constructors, so arrays cross freely.
const vm = require('node:vm');
const { TestEnvironment } = require('jest-environment-node');

const SHARED = [
  'ArrayBuffer', 'SharedArrayBuffer', 'DataView',
  'Int8Array', 'Uint8Array', 'Uint8ClampedArray', 'Int16Array', 'Uint16Array',
  'Int32Array', 'Uint32Array', 'Float32Array', 'Float64Array', 'BigInt64Array', 'BigUint64Array',
];

/**
 * Runs `build` while vm.createContext(sandbox) makes a vanilla context instead of a
 * contextified one. jest-environment-node's constructor creates its context this way and
 * offers no hook for it; the replacement lives only for the duration of that constructor.
 */
function withVanillaContexts(build) {
  const vanilla = vm.constants && vm.constants.DONT_CONTEXTIFY;
  if (!vanilla) return build();
  const createContext = vm.createContext;
  vm.createContext = (_sandbox, options) => createContext(vanilla, options);
  try {
    return build();
  } finally {
    vm.createContext = createContext;
  }
}

class MeshLlmEnvironment extends TestEnvironment {
  constructor(config, context) {
    withVanillaContexts(() => super(config, context));
    for (const name of SHARED) this.global[name] = globalThis[name];
  }
}

module.exports = MeshLlmEnvironment;
