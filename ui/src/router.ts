// Every view's state lives in the URL (history.pushState): reload, back/forward and a pasted
// link give the same view. Components read it with useLocation() and change it with navigate().

import { useEffect, useState } from "preact/hooks";

type Listener = () => void;
const listeners = new Set<Listener>();

function notify(): void {
  listeners.forEach((l) => l());
}

window.addEventListener("popstate", notify);

export function navigate(url: string, replace = false): void {
  const target = new URL(url, location.href);
  if (target.pathname + target.search === location.pathname + location.search) return;
  if (replace) history.replaceState(null, "", target);
  else history.pushState(null, "", target);
  notify();
}

export interface Loc {
  path: string;
  params: URLSearchParams;
  key: string;
}

function current(): Loc {
  return { path: location.pathname, params: new URLSearchParams(location.search), key: location.pathname + location.search };
}

export function useLocation(): Loc {
  const [loc, setLoc] = useState(current);
  useEffect(() => {
    const listener = () => setLoc(current());
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
    };
  }, []);
  return loc;
}

/** Links inside the app navigate without a reload (a modified click opens a tab as usual). */
export function linkClick(event: MouseEvent): void {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const anchor = event.currentTarget as HTMLAnchorElement;
  event.preventDefault();
  navigate(anchor.href);
}
