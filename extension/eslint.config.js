// ESLint (flat config) for the extension's TypeScript: the recommended and type-aware
// rules of typescript-eslint. `jlpm lint` runs it; `jlpm build:prod` (so `pip install`)
// and `make lint` fail on any finding.
const js = require('@eslint/js');
const tseslint = require('typescript-eslint');

module.exports = tseslint.config(
  { ignores: ['lib/', 'node_modules/', '.yarn/', '*.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    files: ['src/**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: __dirname }
    },
    rules: {
      // Server answers are JSON of known shapes (api.ts types them once).
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-explicit-any': 'off',
      // `void promise` marks a fire-and-forget call on purpose.
      '@typescript-eslint/no-floating-promises': ['error', { ignoreVoid: true }],
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      // JupyterLab's own idiom: `namespace CommandIDs { export const ... }`.
      '@typescript-eslint/no-namespace': 'off',
      // Lumino signals take the method and its `this` apart: `connect(this.slot, this)`.
      '@typescript-eslint/unbound-method': 'off',
      eqeqeq: ['error', 'smart'],
      curly: ['error', 'all']
    }
  }
);
