// A small router over the History API, under the /ui base (the host answers every
// /ui/... path with index.html, so a reload or a shared link lands on the same page).
import { useEffect, useState } from 'preact/hooks';

export const BASE = '/ui';

export function navigate(to: string, replace = false) {
  const url = to.startsWith(BASE) ? to : BASE + to;
  if (replace) history.replaceState(null, '', url); else history.pushState(null, '', url);
  dispatchEvent(new PopStateEvent('popstate'));
}

/** The path below /ui and the query of the current location, following navigation. */
export function useLocation(): { path: string; query: URLSearchParams } {
  const read = () => ({
    path: location.pathname.replace(/^\/ui/, '') || '/',
    query: new URLSearchParams(location.search),
  });
  const [loc, setLoc] = useState(read);
  useEffect(() => {
    const on = () => setLoc(read());
    addEventListener('popstate', on);
    return () => removeEventListener('popstate', on);
  }, []);
  return loc;
}

/** Intercept clicks on in-app links (<a href="/ui/...">) so they do not reload the page. */
export function onLinkClick(e: MouseEvent) {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const a = (e.target as Element).closest?.('a');
  const href = a?.getAttribute('href');
  if (!a || !href || !href.startsWith(BASE) || a.target) return;
  e.preventDefault();
  navigate(href);
}
