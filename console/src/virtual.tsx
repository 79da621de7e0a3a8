// A virtualised list of fixed-height rows: only the rows in view (plus a margin) are in
// the DOM, so 10,000 operations or events scroll as smoothly as 10.
import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';

export function VirtualList<T>(props: {
  items: T[];
  rowHeight: number;
  height: number;
  row: (item: T, index: number) => ComponentChildren;
  testId?: string;
  /** Keep the view at the bottom while new rows arrive, if it was there. */
  follow?: boolean;
}) {
  const { items, rowHeight, height, row } = props;
  const ref = useRef<HTMLDivElement>(null);
  const [top, setTop] = useState(0);
  const atBottom = useRef(true);
  const overscan = 10;
  useEffect(() => {
    const el = ref.current;
    if (el && props.follow && atBottom.current) el.scrollTop = el.scrollHeight;
  }, [items.length]);
  const first = Math.max(0, Math.floor(top / rowHeight) - overscan);
  const last = Math.min(items.length, Math.ceil((top + height) / rowHeight) + overscan);
  const rows = [];
  for (let i = first; i < last; i++) {
    rows.push(
      <div class="vrow" key={i} style={{ top: `${i * rowHeight}px`, height: `${rowHeight}px` }}>
        {row(items[i], i)}
      </div>,
    );
  }
  return (
    <div
      ref={ref}
      class="vlist"
      data-testid={props.testId}
      data-count={items.length}
      style={{ height: `${Math.min(height, Math.max(rowHeight, items.length * rowHeight) + 2)}px` }}
      onScroll={(e) => {
        const el = e.currentTarget as HTMLDivElement;
        setTop(el.scrollTop);
        atBottom.current = el.scrollTop + el.clientHeight >= el.scrollHeight - rowHeight;
      }}
    >
      <div style={{ height: `${items.length * rowHeight}px`, position: 'relative' }}>{rows}</div>
    </div>
  );
}
