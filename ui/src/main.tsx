// The app shell: navigation, the token prompt (asked once, kept in sessionStorage), and the
// page of the current path.

import { render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { onTokenNeeded, setToken, token } from "./api";
import { Explorer } from "./Explorer";
import { LogPage } from "./LogPage";
import { AnalyticsPage, HealthPage, ServicesPage } from "./pages";
import { linkClick, navigate, useLocation } from "./router";
import "./style.css";

const PAGES = [
  { path: "/", label: "Explorer" },
  { path: "/ui/services", label: "Services" },
  { path: "/ui/analytics", label: "Analytics" },
  { path: "/ui/health", label: "Health" },
];

function TokenPrompt({ onDone }: { onDone: () => void }) {
  const [value, setValue] = useState("");
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => input.current?.focus(), []);
  return (
    <div class="overlay" role="dialog" aria-modal="true" aria-labelledby="token-title">
      <form
        class="token-form"
        onSubmit={(e) => {
          e.preventDefault();
          if (!value.trim()) return;
          setToken(value.trim());
          onDone();
        }}
      >
        <h2 id="token-title">API token</h2>
        <p>
          This server needs its API token (<code>API_TOKEN</code>). It is kept for this browser tab's session only, and sent as{" "}
          <code>Authorization: Bearer</code>.
        </p>
        {token() && <p class="status error">The token given was refused.</p>}
        <label for="token">Token</label>
        <input id="token" ref={input} type="password" autocomplete="off" value={value} onInput={(e) => setValue((e.target as HTMLInputElement).value)} />
        <button type="submit">Use this token</button>
      </form>
    </div>
  );
}

function Page({ path }: { path: string }) {
  const logMatch = /^\/ui\/logs\/(\d+)\/?$/.exec(path);
  if (logMatch) return <LogPage id={Number(logMatch[1])} />;
  switch (path.replace(/\/$/, "")) {
    case "":
    case "/ui":
      return <Explorer />;
    case "/ui/services":
      return <ServicesPage />;
    case "/ui/analytics":
      return <AnalyticsPage />;
    case "/ui/health":
      return <HealthPage />;
    default:
      return (
        <p class="status error" role="alert">
          No such page: {path}
        </p>
      );
  }
}

function App() {
  const loc = useLocation();
  const [asking, setAsking] = useState(false);
  // Bumped after a token is entered: the page is remade and asks the API again.
  const [generation, setGeneration] = useState(0);
  useEffect(() => onTokenNeeded(() => setAsking(true)), []);
  const current = loc.path === "/ui" || loc.path === "/ui/" ? "/" : loc.path.replace(/\/$/, "");
  return (
    <>
      <header class="top">
        <a class="brand" href="/" onClick={linkClick}>
          LMS
        </a>
        <nav aria-label="Pages">
          {PAGES.map((p) => (
            <a href={p.path} onClick={linkClick} aria-current={current === p.path ? "page" : undefined}>
              {p.label}
            </a>
          ))}
        </nav>
        {token() && (
          <button
            type="button"
            class="small"
            onClick={() => {
              setToken(null);
              setAsking(true);
            }}
          >
            Forget token
          </button>
        )}
      </header>
      <main key={generation}>
        <Page path={loc.path} />
      </main>
      {asking && (
        <TokenPrompt
          onDone={() => {
            setAsking(false);
            setGeneration((g) => g + 1);
          }}
        />
      )}
    </>
  );
}

render(<App />, document.getElementById("app")!);
export { navigate };
