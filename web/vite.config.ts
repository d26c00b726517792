import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

// `vidsync serve` serves the built files, so the build goes straight into the Python
// package. The dev server proxies the API and Socket.IO to a server on port 5000.
const backend = 'http://localhost:5000';

export default defineConfig({
  plugins: [react()],
  build: {
    outDir: '../src/vidsync/web/static',
    emptyOutDir: true,
  },
  server: {
    proxy: {
      '/api': backend,
      '/socket.io': { target: backend, ws: true },
    },
  },
});
