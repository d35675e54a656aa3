import { defineConfig } from 'vite';

// The app is served by `lectern serve` / `lectern catalog` from dist/; in `npm run dev`
// API calls go to a Lectern on :8080.
export default defineConfig({
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: true,
    chunkSizeWarningLimit: 1600,
    // The app, and the API reference served at /api/docs.
    rollupOptions: { input: { main: 'index.html', 'api-docs': 'api-docs.html' } },
  },
  server: {
    proxy: {
      '/api': { target: 'http://127.0.0.1:8080', ws: true },
      '/play': 'http://127.0.0.1:8080',
      '/media': 'http://127.0.0.1:8080',
    },
  },
  test: { environment: 'node', include: ['src/**/*.test.ts'] },
});
