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
  maxWorkers: 2,
};
