import { defineConfig } from 'vite';

// The build is checked in (ui/dist) and embedded in the kaon binary, so it
// must be byte-for-byte reproducible: no timestamps, stable chunk names.
export default defineConfig({
  base: '/',
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact', legalComments: 'none' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    target: 'es2022',
    chunkSizeWarningLimit: 1024,
  },
  server: {
    proxy: { '/api': 'http://127.0.0.1:8484', '/healthz': 'http://127.0.0.1:8484' },
  },
});
