/**
 * Tests are TypeScript compiled by `npm run build` (npm test's pretest) and run from dist/.
 * The global setup finds the model files, or fetches the missing ones once into ./models.
 */
module.exports = {
  rootDir: __dirname,
  testMatch: ['<rootDir>/dist/test/**/*.test.js'],
  globalSetup: '<rootDir>/dist/test/support/global-setup.js',
  testEnvironment: '<rootDir>/test/environment.js',
  testTimeout: 120000,
  // one test file at a time: many files start a dozen processes of their own (head nodes,
  // brokers, Node-RED, chromium), and two such files at once put a load of 8 on 2 cores
  maxWorkers: 1,
  // in one process the run would wait on whatever a test left running; workers were killed at the end
  forceExit: true,
};
