// Small shared pieces: the states every view shows in words (loading, empty, error,
// unavailable), copy buttons, a hook that loads JSON from the API.

import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import { ApiError, getJson } from "./api";
import type { Params } from "./api";

export type Loaded<T> =
  | { state: "loading" }
  | { state: "error"; message: string; unavailable: boolean }
  | { state: "ok"; value: T };

export function errorState(exc: unknown): Loaded<never> {
  if (exc instanceof ApiError) return { state: "error", message: exc.message, unavailable: exc.unavailable };
  return { state: "error", message: String(exc), unavailable: false };
}

/** GET `path` with `params`, again whenever `key` changes (stale answers are dropped). */
export function useApi<T>(path: string | null, params: Params, key: string): Loaded<T> {
  const [loaded, setLoaded] = useState<Loaded<T>>({ state: "loading" });
  useEffect(() => {
    if (path === null) return;
    const abort = new AbortController();
    setLoaded({ state: "loading" });
    getJson<T>(path, params, abort.signal).then(
      (value) => setLoaded({ state: "ok", value }),
      (exc: unknown) => {
        if (!abort.signal.aborted) setLoaded(errorState(exc));
      },
    );
    return () => abort.abort();
  }, [path, key]);
  return loaded;
}

export function Loading({ what }: { what: string }) {
  return (
    <p class="status loading" role="status">
      Loading {what}…
    </p>
  );
}

export function ErrorBox({ message }: { message: string }) {
  return (
    <p class="status error" role="alert">
      {message}
    </p>
  );
}

export function Unavailable({ what, endpoint }: { what: string; endpoint: string }) {
  return (
    <p class="status unavailable" role="status">
      {what} unavailable: this server has no <code>{endpoint}</code> yet.
    </p>
  );
}

/** Renders the loading/error/unavailable states of `loaded`, or `children(value)`. */
export function Show<T>({
  loaded,
  what,
  endpoint,
  children,
}: {
  loaded: Loaded<T>;
  what: string;
  endpoint: string;
  children: (value: T) => ComponentChildren;
}) {
  if (loaded.state === "loading") return <Loading what={what} />;
  if (loaded.state === "error") {
    return loaded.unavailable ? <Unavailable what={what} endpoint={endpoint} /> : <ErrorBox message={loaded.message} />;
  }
  return <>{children(loaded.value)}</>;
}

export function CopyButton({ text, label }: { text: string; label: string }) {
  const [done, setDone] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setDone(true);
      setTimeout(() => setDone(false), 1500);
    } catch {
      setDone(false);
    }
  };
  return (
    <button type="button" class="small" onClick={copy}>
      {done ? "Copied" : label}
    </button>
  );
}
