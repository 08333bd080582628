import assert from "node:assert/strict";
import { fractionFlag, intFlag, numberFlag } from "../../pipeline/_cli.ts";

Deno.test("intFlag() accepts whole numbers at or above the minimum, naming the flag otherwise", () => {
  assert.equal(intFlag("steps", "300"), 300);
  assert.equal(intFlag("seed", "0", 0), 0);
  assert.throws(
    () => intFlag("steps", "0"),
    /--steps must be a whole number of at least 1, got "0"/,
  );
  assert.throws(() => intFlag("steps", "1.5"), /--steps must be a whole number/);
  assert.throws(() => intFlag("steps", "ten"), /got "ten"/);
});

Deno.test("numberFlag() and fractionFlag() check their ranges", () => {
  assert.equal(numberFlag("lr", "3e-4"), 3e-4);
  assert.throws(() => numberFlag("lr", "0"), /--lr must be a number above 0, got "0"/);
  assert.throws(() => numberFlag("lr", "Infinity"), /--lr must be a number above 0/);
  assert.equal(fractionFlag("val-fraction", "0"), 0);
  assert.equal(fractionFlag("val-fraction", "0.05"), 0.05);
  assert.throws(() => fractionFlag("val-fraction", "1"), /from 0 up to \(not including\) 1/);
  assert.throws(() => fractionFlag("val-fraction", "-0.1"), /got "-0.1"/);
});
