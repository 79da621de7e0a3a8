import { defineConfig } from 'vite';

// The host serves the build at /ui (host/src/api/ui.rs embeds dist/ at compile time):
// hashed file names under assets/ are cached for good, index.html never.
export default defineConfig({
  base: '/ui/',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    assetsInlineLimit: 0,
    sourcemap: false,
    reportCompressedSize: false,
  },
  resolve: {
    alias: { react: 'preact/compat', 'react-dom': 'preact/compat' },
  },
  server: {
    // `npm run dev` against a host on the default port.
    proxy: { '/v1': 'http://127.0.0.1:7700', '/healthz': 'http://127.0.0.1:7700' },
  },
});
