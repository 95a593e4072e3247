package redact

// findNumbers finds payment card numbers, IBANs and US SSNs (those enabled)
// in one pass over s. Each candidate must pass its check digits (Luhn,
// ISO 7064 mod 97-10) or range rules, so order numbers, timestamps and
// phone numbers of the same length mostly stay.
func (r *Redactor) findNumbers(s string, add func(span)) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !numberStart[c] {
			continue
		}
		if r.iban && 'A' <= c && c <= 'Z' && i+3 < len(s) && (i == 0 || !isAlnum(s[i-1])) &&
			isUpper(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			if end := ibanEnd(s, i); end > 0 {
				add(span{i, end, KindIBAN})
				i = end - 1
				continue
			}
		}
		if !isDigit(c) || (i > 0 && isAlnum(s[i-1])) {
			continue
		}
		// A run of digits with single ' ' or '-' between them.
		end, digits, seps := i, 0, 0
		for end < len(s) {
			if isDigit(s[end]) {
				digits++
				end++
				continue
			}
			if (s[end] == ' ' || s[end] == '-') && end+1 < len(s) && isDigit(s[end+1]) && digits > 0 {
				seps++
				end++
				continue
			}
			break
		}
		if end < len(s) && isAlnum(s[end]) {
			// The last group is glued to letters (an identifier such as
			// "0000A"); what precedes its separator may still be a number.
			k := end
			for k > i && isDigit(s[k-1]) {
				k--
			}
			if k == i || seps == 0 {
				i = end
				continue
			}
			digits -= end - k
			end = k - 1
			seps--
		}
		if seps == 0 {
			r.checkRun(s, i, end, digits, add)
		} else {
			r.checkSubRuns(s, i, end, add)
		}
		i = end
	}
}

// checkRun reports s[start:end] if it is an SSN or a card number.
func (r *Redactor) checkRun(s string, start, end, digits int, add func(span)) bool {
	run := s[start:end]
	switch {
	case r.ssn && isSSN(run):
		add(span{start, end, KindSSN})
	case r.pan && digits >= 13 && digits <= 19 && isPAN(run):
		add(span{start, end, KindPAN})
	default:
		return false
	}
	return true
}

// maxGroups bounds the sub-run search below (quadratic in groups).
const maxGroups = 16

// checkSubRuns looks inside a separated digit run for a card number or
// SSN that starts and ends on group boundaries: "4111 1111 1111 1111 2026"
// or "ref 12 4111-1111-1111-1111" must not hide the card behind its
// neighbours.
func (r *Redactor) checkSubRuns(s string, start, end int, add func(span)) {
	var starts, ends [maxGroups]int
	g := 0
	for k := start; k < end && g < maxGroups; {
		starts[g] = k
		for k < end && isDigit(s[k]) {
			k++
		}
		ends[g] = k
		g++
		k++ // the separator
	}
	for a := 0; a < g; a++ {
		for b := g - 1; b >= a; b-- {
			digits := 0
			for k := starts[a]; k < ends[b]; k++ {
				if isDigit(s[k]) {
					digits++
				}
			}
			if r.checkRun(s, starts[a], ends[b], digits, add) {
				a = b // continue after the finding
				break
			}
		}
	}
}

// numberStart marks bytes that can start a finding: digits and the
// upper-case letters of an IBAN's country code.
var numberStart = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	return t
}()

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isUpper(c byte) bool { return 'A' <= c && c <= 'Z' }

// isSSN accepts ddd-dd-dddd outside the ranges the SSA never issues:
// area 000, 666 and 900-999, group 00, serial 0000. Undashed nine-digit
// runs are not matched: too many other numbers look like them.
func isSSN(s string) bool {
	if len(s) != 11 || s[3] != '-' || s[6] != '-' {
		return false
	}
	for k, c := range []byte(s) {
		if k != 3 && k != 6 && !isDigit(c) {
			return false
		}
	}
	area, group, serial := s[0:3], s[4:6], s[7:11]
	return area != "000" && area != "666" && s[0] != '9' && group != "00" && serial != "0000"
}

// isPAN checks the Luhn digit and that the number starts with a prefix a
// card network issues (Visa 4, Mastercard 51-55 and 2221-2720, Amex 34/37,
// Discover 6011/644-649/65, JCB 3528-3589, Diners 36/38/300-305, UnionPay
// 62); separators, if any, must be of one kind.
func isPAN(run string) bool {
	var d [19]byte
	n := 0
	var sep byte
	for i := 0; i < len(run); i++ {
		c := run[i]
		if isDigit(c) {
			if n == len(d) {
				return false
			}
			d[n] = c - '0'
			n++
			continue
		}
		if sep != 0 && c != sep {
			return false
		}
		sep = c
	}
	if n < 13 {
		return false
	}
	sum := 0
	for k := 0; k < n; k++ {
		v := int(d[n-1-k])
		if k%2 == 1 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	if sum%10 != 0 {
		return false
	}
	p2 := int(d[0])*10 + int(d[1])
	p4 := p2*100 + int(d[2])*10 + int(d[3])
	switch {
	case d[0] == 4:
		return true
	case p2 >= 51 && p2 <= 55, p4 >= 2221 && p4 <= 2720:
		return n == 16
	case p2 == 34 || p2 == 37:
		return n == 15
	case p4 == 6011, p2 == 65, p4/10 >= 644 && p4/10 <= 649, p2 == 62:
		return n >= 16
	case p4 >= 3528 && p4 <= 3589:
		return n >= 16
	case p2 == 36 || p2 == 38 || (p4/10 >= 300 && p4/10 <= 305):
		return n >= 14
	}
	return false
}

// ibanEnd returns the end of an IBAN starting at s[i] (country code,
// check digits, then upper-case alphanumerics, optionally in space-separated
// groups of four), or 0 when the mod-97 check fails.
func ibanEnd(s string, i int) int {
	var buf [34]byte
	n := 0
	j := i
	group := 0
	for j < len(s) && n < len(buf) {
		c := s[j]
		if isDigit(c) || isUpper(c) {
			buf[n] = c
			n++
			group++
			j++
			continue
		}
		if c == ' ' && group == 4 && j+1 < len(s) && (isDigit(s[j+1]) || isUpper(s[j+1])) && n >= 4 {
			group = 0
			j++
			continue
		}
		break
	}
	if j < len(s) && isAlnum(s[j]) {
		return 0
	}
	if n < 15 || n > 34 {
		return 0
	}
	// Move the first four characters to the end, letters to 10..35, and
	// take the remainder mod 97 digit by digit (ISO 13616).
	rem := 0
	for k := 0; k < n; k++ {
		c := buf[(k+4)%n]
		if isDigit(c) {
			rem = (rem*10 + int(c-'0')) % 97
		} else {
			rem = (rem*100 + int(c-'A'+10)) % 97
		}
	}
	if rem != 1 {
		return 0
	}
	return j
}
