// The UI is served by `lms api` under /ui/ (lms/ui/__init__.py); the build goes into the
// Python package, where StaticFiles serves it.
import { defineConfig } from "vite";
import preact from "@preact/preset-vite";

export default defineConfig({
  base: "/ui/",
  plugins: [preact()],
  build: {
    outDir: "../lms/ui/static",
    emptyOutDir: true,
    target: "es2022",
    // No inline module preload polyfill: the CSP forbids inline scripts.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
  },
});
