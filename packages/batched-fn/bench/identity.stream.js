// Worker-mode stream module for the overhead benchmark: each state counts down, one value per step.
export function start(inputs) {
  return inputs.map((left) => ({ left }));
}

export function step(states) {
  return states.map((s) => (--s.left === 0 ? { value: 1, done: true } : { value: 1 }));
}
