/** Tests are TypeScript compiled by `npm run build` (npm test's pretest) and run from dist/. */
module.exports = {
  rootDir: __dirname,
  testMatch: ['<rootDir>/dist/test/**/*.test.js'],
  testEnvironment: '<rootDir>/test/environment.js',
  testTimeout: 120000,
  maxWorkers: 2,
};
